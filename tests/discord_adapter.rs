//! The Discord adapter against the fake Discord API: Discord's rate limits kept on our side
//! (one post per second per channel, one edit per two seconds per message, route buckets from
//! `X-RateLimit-*`), every 429 waited out for its `Retry-After`, threads started from their
//! message, messages over Discord's limits cut with the whole text attached, files and direct
//! messages.

mod common;
mod fake_discord;
mod support;

use std::time::{Duration, Instant};

use fake_discord::{APPLICATION, FakeDiscord, INCIDENTS, OPS, TOKEN};
use firebell::chat::discord::DiscordAdapter;
use firebell::chat::{Button, ChatAdapter, ChatError, FileAttachment, Message, MessageRef};
use firebell::config::Secret;

fn adapter(fake: &FakeDiscord) -> DiscordAdapter {
    DiscordAdapter::with_api_url(&Secret::new(TOKEN), &fake.api_url(), APPLICATION, None, Some(INCIDENTS.to_string()))
        .expect("an adapter")
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after_and_then_succeeds() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    fake.rate_limit_next("POST channels/", 1, 1.5);
    let posted = adapter.post(OPS, None, &Message::plain("after the wait")).await.expect("posted after the 429");
    let calls = fake.calls_to(&format!("POST channels/{OPS}/messages"));
    assert_eq!(calls.iter().map(|call| call.status).collect::<Vec<_>>(), [429, 200]);
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(1_500), "retried after {:?}", calls[1].at - calls[0].at);
    assert_eq!(fake.message(&posted.id).unwrap().content, "after the wait");
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn a_call_that_stays_rate_limited_gives_up_with_rate_limited() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    fake.rate_limit_next("POST channels/", 10, 0.2);
    let error = adapter.post(OPS, None, &Message::plain("never")).await.unwrap_err();
    assert!(matches!(error, ChatError::RateLimited { .. }), "{error}");
    assert_eq!(fake.calls_to("POST channels/").len(), 4, "the first try and three retries");
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn a_429_with_nonsense_waits_neither_panics_nor_stops_the_adapter() {
    // Audit #7: `retry_after: -1` (or 1e20) in a 429's body panicked the task that made the call,
    // which for notifications was the only deliverer.
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    fake.rate_limit_next_with_body("POST channels/", 1, serde_json::json!(-1));
    let posted = adapter.post(OPS, None, &Message::plain("after a negative wait")).await.expect("posted");
    assert_eq!(fake.message(&posted.id).unwrap().content, "after a negative wait");

    fake.rate_limit_next_with_body("POST channels/", 1, serde_json::json!(1e20));
    let error = adapter.post(INCIDENTS, None, &Message::plain("told to wait for ever")).await.unwrap_err();
    assert!(matches!(error, ChatError::RateLimited { .. }), "a wait past the limit gives up: {error}");

    fake.rate_limit_next_with_body("POST channels/", 1, serde_json::json!("soon"));
    let posted = adapter.post(OPS, None, &Message::plain("after a wait that is not a number")).await.expect("posted");
    assert_eq!(fake.message(&posted.id).unwrap().content, "after a wait that is not a number");
    let statuses: Vec<u16> =
        fake.calls_to(&format!("POST channels/{OPS}/messages")).iter().map(|call| call.status).collect();
    assert_eq!(statuses, [429, 200, 429, 200]);
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn posts_in_one_channel_are_a_second_apart_and_other_channels_do_not_wait() {
    let fake = FakeDiscord::start().await;
    let adapter = std::sync::Arc::new(adapter(&fake));
    let mut tasks = Vec::new();
    for index in 0..3 {
        let adapter = adapter.clone();
        tasks
            .push(tokio::spawn(async move { adapter.post(OPS, None, &Message::plain(format!("post {index}"))).await }));
    }
    let direct = adapter.direct("discord:444", &Message::plain("a page")).await.expect("a direct message");
    for task in tasks {
        task.await.unwrap().expect("posted");
    }
    let times: Vec<Instant> =
        fake.calls_to(&format!("POST channels/{OPS}/messages")).iter().map(|call| call.at).collect();
    assert_eq!(times.len(), 3);
    assert!(gaps(&times).iter().all(|gap| *gap >= Duration::from_secs(1)), "{:?}", gaps(&times));
    // The direct message did not queue behind the channel: it reached Discord before the last post.
    let dm = fake
        .calls_to("POST channels/")
        .into_iter()
        .find(|call| !call.path.starts_with(&format!("channels/{OPS}/")))
        .expect("the DM");
    assert!(dm.at < times[2], "the direct message waited for another channel's pacing");
    assert_eq!(fake.message(&direct.id).unwrap().content, "a page");
    adapter.direct("444", &Message::plain("again")).await.expect("a second direct message");
    assert_eq!(fake.calls_to("POST users/@me/channels").len(), 1, "the DM channel is opened once");
    fake.assert_paced();
}

#[tokio::test]
async fn edits_of_one_message_are_two_seconds_apart_and_the_last_one_wins() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    let posted = adapter.post(OPS, None, &Message::plain("v0")).await.unwrap();
    for version in 1..=3 {
        adapter.update(&posted, &Message::new().header(format!("v{version}")).text("body")).await.unwrap();
    }
    let times: Vec<Instant> = fake.calls_to("PATCH channels/").iter().map(|call| call.at).collect();
    assert!(gaps(&times).iter().all(|gap| *gap >= Duration::from_secs(2)), "{:?}", gaps(&times));
    let message = fake.message(&posted.id).unwrap();
    assert_eq!(message.embeds[0]["title"], "v3");
    assert_eq!(message.edits, 3);
    fake.assert_paced();
}

#[tokio::test]
async fn a_route_bucket_that_runs_dry_is_waited_out_from_its_headers() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    // Six messages in one channel, then an edit of each at once: the channel's edit bucket holds
    // five per five seconds, which only the X-RateLimit headers tell.
    let mut posted = Vec::new();
    for index in 0..6 {
        posted.push(adapter.post(OPS, None, &Message::plain(format!("m{index}"))).await.unwrap());
    }
    let started = Instant::now();
    for message in &posted {
        adapter.update(message, &Message::plain("edited")).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the sixth edit waited for the bucket: {:?}",
        started.elapsed()
    );
    assert!(posted.iter().all(|message| fake.message(&message.id).unwrap().content == "edited"));
    fake.assert_paced();
}

#[tokio::test]
async fn the_incident_channel_s_posts_start_a_thread_and_replies_go_into_it() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    let notification = adapter
        .post(
            INCIDENTS,
            None,
            &Message::plain("🚨 *INCIDENT #1: Disk full*\nmore").buttons(vec![Button::new(
                "Acknowledge",
                "incident_ack",
                "1",
            )]),
        )
        .await
        .unwrap();
    assert_eq!(notification, MessageRef { channel: INCIDENTS.to_string(), id: notification.id.clone() });
    let threads = fake.threads();
    assert_eq!(threads.len(), 1);
    assert_eq!((threads[0].id.as_str(), threads[0].parent.as_str()), (notification.id.as_str(), INCIDENTS));
    assert_eq!(threads[0].name, "🚨 INCIDENT #1: Disk full");

    let reply = adapter.post(INCIDENTS, Some(&notification.id), &Message::plain("in the thread")).await.unwrap();
    assert_eq!(reply.channel, INCIDENTS);
    let (thread, message) = reply.id.split_once('/').expect("THREAD/MESSAGE");
    assert_eq!(thread, notification.id);
    assert_eq!(fake.message(message).unwrap().channel, notification.id);
    // A reference rebuilt from the parent channel and the stored id still edits the message.
    let rebuilt = MessageRef { channel: INCIDENTS.to_string(), id: reply.id.clone() };
    adapter.update(&rebuilt, &Message::plain("edited in the thread")).await.unwrap();
    assert_eq!(fake.message(message).unwrap().content, "edited in the thread");
    adapter.update(&notification, &Message::plain("top edited")).await.unwrap();
    assert_eq!(fake.message(&notification.id).unwrap().content, "top edited");
    assert!(fake.message(&notification.id).unwrap().buttons().is_empty(), "an edit without buttons removes them");
    fake.assert_paced();
}

#[tokio::test]
async fn over_limit_messages_are_cut_with_the_whole_text_attached_and_files_are_uploaded() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    let output = (1..=5_000).map(|line| format!("line {line}")).collect::<Vec<_>>().join("\n");
    let message = Message::new().header("Big").code(output).buttons(vec![Button::new("Rerun", "diagnose", "big")]);
    let posted = adapter.post(OPS, None, &message).await.expect("accepted within Discord's limits");
    let stored = fake.message(&posted.id).unwrap();
    assert!(stored.visible_text().contains("…(truncated)"));
    assert_eq!(stored.files.len(), 1);
    assert!(stored.files[0].1.contains("line 5000"), "the whole text is attached");
    assert_eq!(stored.buttons(), [("Rerun".to_string(), "diagnose:big".to_string())]);

    let file =
        FileAttachment { filename: "out.txt".into(), title: "Output".into(), content: b"hello\nworld\n".to_vec() };
    adapter.upload(OPS, Some(&posted.id), &file).await.expect("uploaded into a new thread");
    let uploaded = fake.messages(&posted.id);
    assert_eq!(uploaded.len(), 1);
    assert_eq!(uploaded[0].files, [("out.txt".to_string(), "hello\nworld\n".to_string())]);
    assert!(uploaded[0].content.contains("Output"));
    let empty = FileAttachment { filename: "e.txt".into(), title: "Empty".into(), content: Vec::new() };
    assert!(adapter.upload(OPS, None, &empty).await.is_err());
    fake.assert_paced();
}

#[tokio::test]
async fn errors_name_discord_s_reason_and_never_the_token() {
    let fake = FakeDiscord::start().await;
    let adapter = adapter(&fake);
    let error = adapter.post("1999999999999999999", None, &Message::plain("nowhere")).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("10003") && text.contains("Unknown Channel"), "{text}");
    assert!(!text.contains(TOKEN) && !format!("{adapter:?}").contains(TOKEN));
    fake.assert_no_unexpected();
}
