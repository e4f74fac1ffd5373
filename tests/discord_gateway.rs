//! Discord through the gateway: the real app with a bot token and no public key connects to a
//! fake gateway (found through the fake REST API's `GET /gateway/bot`), identifies, answers the
//! interactions it receives through their callbacks with the same code as the HTTP endpoint,
//! resumes its session when asked to reconnect, and does nothing twice for a repeated
//! interaction. Commands are registered once, not per connection.

mod common;
mod fake_discord;
mod support;

use std::time::Duration;

use fake_discord::app::{Place, Transport, Workspace, command, spawn_with};
use fake_discord::gateway::FakeGateway;
use fake_discord::{FakeDiscord, INCIDENTS, OPS, TOKEN};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const USER: &str = "333333333333333333";

fn runbook(workspace: &Workspace) {
    workspace.runbook(
        "ping",
        "name = \"ping\"\nsummary = \"Says pong\"\n\n[[checks]]\nname = \"pong\"\nkind = \"exec\"\nargv = [\"true\"]\n",
    );
}

#[tokio::test]
async fn interactions_over_the_gateway_are_answered_through_their_callback_and_a_session_resumes() {
    let gateway = FakeGateway::start().await;
    let fake = FakeDiscord::start().await;
    fake.set_gateway_url(&gateway.url);
    let workspace = Workspace::new();
    runbook(&workspace);
    let app = spawn_with(fake, workspace, "", Transport::Gateway).await;

    let identify = gateway.wait_op(1, 2, WAIT).await;
    assert_eq!(identify["d"]["token"], TOKEN);
    assert_eq!(identify["d"]["intents"], 0);
    gateway.send(json!({"op": 0, "s": 1, "t": "READY", "d": {
        "v": 10, "session_id": "session-1", "resume_gateway_url": gateway.url, "user": {"id": "1", "bot": true},
        "guilds": [], "application": {"id": fake_discord::APPLICATION, "flags": 0}}}));

    let declare = command(
        USER,
        &Place::channel(OPS),
        "incident",
        json!([{"name": "declare", "type": 1, "options": [
        {"name": "title", "type": 3, "value": "Gateway incident"}]}]),
    );
    let id = declare["id"].as_str().unwrap().to_string();
    gateway.send(json!({"op": 0, "s": 2, "t": "INTERACTION_CREATE", "d": declare}));
    app.fake.wait_for("the callback", WAIT, |fake| fake.interaction_answer(&id).is_some()).await;
    let answer = app.fake.interaction_answer(&id).unwrap();
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    assert!(answer["data"]["content"].as_str().unwrap().contains("/incident declare \"Gateway incident\""), "{answer}");
    app.fake
        .wait_message("the notification", INCIDENTS, WAIT, |message| message.content.contains("Gateway incident"))
        .await;

    // Discord asks the bot to reconnect: it resumes where it was, with the last sequence.
    gateway.send(json!({"op": 7, "d": null}));
    let resume = gateway.wait_op(2, 6, WAIT).await;
    assert_eq!(resume["d"], json!({"token": TOKEN, "session_id": "session-1", "seq": 2}));
    assert!(
        gateway.received().iter().all(|(number, payload)| !(*number == 2 && payload["op"] == 2)),
        "resumed, not identified"
    );

    // The same interaction again (a replay after the resume) does nothing; a new one is answered.
    gateway.send(json!({"op": 0, "s": 3, "t": "RESUMED", "d": null}));
    gateway.send(json!({"op": 0, "s": 4, "t": "INTERACTION_CREATE", "d": declare}));
    let list = command(USER, &Place::channel(OPS), "incident", json!([{"name": "list", "type": 1}]));
    let list_id = list["id"].as_str().unwrap().to_string();
    gateway.send(json!({"op": 0, "s": 5, "t": "INTERACTION_CREATE", "d": list}));
    app.fake.wait_for("the list's callback", WAIT, |fake| fake.interaction_answer(&list_id).is_some()).await;
    let listed = app.fake.interaction_answer(&list_id).unwrap();
    assert!(listed["data"]["embeds"][0]["description"].as_str().unwrap().contains("Gateway incident"), "{listed}");
    // A repeat is dropped without any call, so there is no event to wait for; the list, sent
    // after it, has been answered, and the repeat's lookup is a single store read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.fake.calls_to(&format!("interactions/{id}/")).len(),
        1,
        "the repeated interaction was answered again"
    );
    assert_eq!(app.get_json("/api/incidents").await.as_array().unwrap().len(), 1);

    assert_eq!(app.fake.calls_to("GET gateway/bot").len(), 1, "the gateway address is asked for once");
    assert_eq!(app.fake.registrations().len(), 1, "commands are registered once, not per connection");
    assert_eq!(gateway.connections(), 2);
    app.fake.assert_paced();
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_session_identifies_again_after_a_pause() {
    let gateway = FakeGateway::start().await;
    let fake = FakeDiscord::start().await;
    fake.set_gateway_url(&gateway.url);
    let workspace = Workspace::new();
    runbook(&workspace);
    let app = spawn_with(fake, workspace, "", Transport::Gateway).await;
    gateway.wait_op(1, 2, WAIT).await;
    let invalidated = std::time::Instant::now();
    gateway.send(json!({"op": 9, "d": false}));
    gateway.wait_op(2, 2, WAIT).await;
    assert!(invalidated.elapsed() >= Duration::from_secs(1), "Discord asks for 1–5 s before identifying again");
    assert!(
        gateway.received().iter().all(|(_, payload)| payload["op"] != 6),
        "a session that is not resumable is not resumed"
    );
    // Nothing happens next, by design: only time can show that no reconnect follows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gateway.connections(), 2, "no reconnect without a reason");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_token_stops_the_gateway_instead_of_reconnecting() {
    let gateway = FakeGateway::start().await;
    let fake = FakeDiscord::start().await;
    fake.set_gateway_url(&gateway.url);
    let workspace = Workspace::new();
    runbook(&workspace);
    let app = spawn_with(fake, workspace, "", Transport::Gateway).await;
    gateway.wait_op(1, 2, WAIT).await;
    gateway.close(4004);
    // The gateway stops for good, and says so in /readyz: from then on nothing reconnects.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ready: serde_json::Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
        if ready["failing"]["discord-gateway"].is_string() {
            assert_eq!(ready["status"], "degraded", "{ready}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the gateway never said it stopped: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.connections(), 1, "authentication failed: reconnecting cannot fix it");
    // The rest of the bot keeps serving.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    app.stop().await;
}
