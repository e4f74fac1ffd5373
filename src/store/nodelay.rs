//! `TCP_NODELAY` on the database's sockets, which sqlx 0.9.0 no longer sets (sqlx #4335; fixed by
//! #4336, not in a release yet). Without it a statement whose messages do not fit one TCP
//! segment waits for the server's delayed ACK (Nagle's algorithm): about 40 ms each time, and a
//! 500-alert batch on PostgreSQL spent 200 ms of its 230 ms waiting. sqlx does not hand out its
//! socket, so right after it connects, the store finds the process's TCP sockets whose peer is
//! the database's port and sets the option on them. Setting it on a socket that already has it,
//! or on another client's socket to that port (a `postgres` check target), only helps.
//!
//! The same pass sets keepalive (probes after 15 s idle, every 5 s, 3 of them) and, on Linux,
//! `TCP_USER_TIMEOUT` of 30 s, so a connection whose peer vanished (a NAT that forgot it, a
//! partition) fails in about half a minute instead of the kernel's quarter of an hour, idle or
//! with data in flight (audit #15).
//!
//! Remove the `TCP_NODELAY` part once a sqlx release sets it again.

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to `port`; returns how
/// many it set. Linux only (it reads `/proc/self/fd`); elsewhere it does nothing.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to(port: u16) -> usize {
    use std::os::fd::{BorrowedFd, RawFd};

    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let mut set = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<RawFd>().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_str().is_some_and(|target| target.starts_with("socket:")));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is only borrowed for the next few
        // system calls. Should another thread close it and open something else under its number
        // meanwhile, getpeername/setsockopt fail on a non-socket and only set a harmless option
        // on a socket; nothing is read from or written to memory it owns.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let to_port = socket.peer_addr().ok().and_then(|peer| peer.as_socket()).is_some_and(|peer| peer.port() == port);
        if to_port
            && socket.r#type().is_ok_and(|kind| kind == socket2::Type::STREAM)
            && socket.set_tcp_nodelay(true).is_ok()
        {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(std::time::Duration::from_secs(15))
                .with_interval(std::time::Duration::from_secs(5))
                .with_retries(3);
            let _ = socket.set_tcp_keepalive(&keepalive);
            let _ = socket.set_tcp_user_timeout(Some(std::time::Duration::from_secs(30)));
            set += 1;
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to(_port: u16) -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sets_the_option_on_sockets_to_the_port_and_leaves_others_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let bystander = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!client.nodelay().unwrap() && !bystander.nodelay().unwrap(), "off by default");

        assert!(set_on_sockets_to(listener.local_addr().unwrap().port()) >= 1);
        assert!(client.nodelay().unwrap());
        let client_ref = socket2::SockRef::from(&client);
        assert!(client_ref.keepalive().unwrap());
        assert_eq!(client_ref.tcp_user_timeout().unwrap(), Some(std::time::Duration::from_secs(30)));
        assert!(!bystander.nodelay().unwrap(), "a socket to another port is left alone");
        assert!(!socket2::SockRef::from(&bystander).keepalive().unwrap());
    }
}
