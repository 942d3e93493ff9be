//! The FCM client against the fake FCM: OAuth2 exchange and refresh, every error class, outages.

use std::time::{Duration, SystemTime};

use chrono::Utc;
use serde_json::Value;
use trygg_push::fake::{FakeFcm, Fault, TEST_CLIENT_EMAIL, test_service_account_json};
use trygg_push::{
    AlarmKind, AlarmPush, AuthCause, Backoff, FcmClient, Message, MessageBuilder, MessageError, Position,
    RetryCause, SendOutcome, ServiceAccountKey, TokenInvalidCause, TokenProvider,
};

fn alarm(id: &str, kind: AlarmKind, token: &str) -> AlarmPush {
    AlarmPush {
        alarm_id: id.to_owned(),
        kind,
        position: Some((
            Position { lat: 57.708_870, lon: 11.974_560, accuracy_m: Some(12.4) },
            Utc::now() - chrono::Duration::seconds(90),
        )),
        push_token: token.to_owned(),
        wearer_name: Some("Anna Andersson".to_owned()),
    }
}

fn sos(token: &str) -> Message {
    MessageBuilder::default().critical(&alarm("a1", AlarmKind::Sos, token), Utc::now()).unwrap()
}

fn client(fake: &FakeFcm) -> FcmClient {
    FcmClient::from_key(fake.service_account(), &fake.endpoint()).unwrap()
}

fn client_with_margin(fake: &FakeFcm, margin: Duration) -> FcmClient {
    let tokens = TokenProvider::new(trygg_push::client::http_client().unwrap(), fake.service_account())
        .with_refresh_margin(margin);
    FcmClient::new(tokens, &fake.endpoint())
}

/// Moves tokio's clock (which the token cache and the fake both read) without waiting, then
/// lets real I/O run again.
async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

fn assert_delivered(outcome: &SendOutcome) {
    assert!(
        matches!(outcome, SendOutcome::Delivered { name } if name.starts_with("projects/trygg-test/messages/")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_first_send_exchanges_a_signed_assertion_and_later_sends_reuse_the_token() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    for _ in 0..3 {
        assert_delivered(&client.send(&sos("phone-1")).await);
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.count_for_token("phone-1"), 3);
}

#[tokio::test]
async fn concurrent_senders_share_one_token_fetch() {
    let fake = FakeFcm::start().await.unwrap();
    let client = std::sync::Arc::new(client(&fake));
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        sends.spawn(async move { client.send(&sos("phone-1")).await });
    }
    while let Some(outcome) = sends.join_next().await {
        assert_delivered(&outcome.unwrap());
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.count_for_token("phone-1"), 10);
}

#[tokio::test]
async fn the_token_is_refreshed_when_less_than_the_margin_is_left() {
    let fake = FakeFcm::start().await.unwrap();
    fake.set_token_lifetime(Duration::from_secs(600));
    let client = client_with_margin(&fake, Duration::from_secs(300));
    let first = client.tokens().access_token().await.unwrap();

    advance(Duration::from_secs(200)).await;
    assert_eq!(client.tokens().access_token().await.unwrap(), first);
    assert_eq!(fake.token_requests(), 1);

    advance(Duration::from_secs(150)).await;
    let second = client.tokens().access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(fake.token_requests(), 2);
    assert_delivered(&client.send(&sos("phone-1")).await);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn an_expired_token_is_never_sent() {
    let fake = FakeFcm::start().await.unwrap();
    fake.set_token_lifetime(Duration::from_secs(60));
    let client = client_with_margin(&fake, Duration::from_secs(5));
    assert_delivered(&client.send(&sos("phone-1")).await);

    advance(Duration::from_secs(61)).await;
    assert_delivered(&client.send(&sos("phone-1")).await);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn a_failed_early_refresh_keeps_using_the_still_valid_token() {
    let fake = FakeFcm::start().await.unwrap();
    fake.set_token_lifetime(Duration::from_secs(600));
    let client = client_with_margin(&fake, Duration::from_secs(300));
    assert_delivered(&client.send(&sos("phone-1")).await);

    advance(Duration::from_secs(400)).await;
    // Down only long enough to fail the early refresh; the send itself needs the server.
    fake.go_down_for(Duration::from_millis(200));
    let token = client.tokens().access_token().await.unwrap();
    assert_eq!(token, "fake-at-1");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_delivered(&client.send(&sos("phone-1")).await);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_send_retried_once() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    assert_delivered(&client.send(&sos("phone-1")).await);
    fake.revoke_access_tokens();
    assert_delivered(&client.send(&sos("phone-1")).await);
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.count_for_token("phone-1"), 2);
}

#[tokio::test]
async fn a_401_that_persists_with_a_new_token_is_an_auth_error() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    fake.fail_next(2, Fault::Unauthenticated);
    let outcome = client.send(&sos("phone-1")).await;
    assert!(
        matches!(outcome, SendOutcome::AuthError { cause: AuthCause::Unauthenticated, .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.count_for_token("phone-1"), 0);
}

#[tokio::test]
async fn an_assertion_from_an_account_google_does_not_know_is_an_auth_error() {
    let fake = FakeFcm::start().await.unwrap();
    let token_uri = format!("{}/token", fake.endpoint());
    let key =
        ServiceAccountKey::from_json(&test_service_account_json(&token_uri, "intruder@example.com")).unwrap();
    let client = FcmClient::from_key(key, &fake.endpoint()).unwrap();
    let outcome = client.send(&sos("phone-1")).await;
    assert!(
        matches!(&outcome, SendOutcome::AuthError { cause: AuthCause::TokenExchange, detail } if detail.contains("invalid_grant")),
        "{outcome:?}"
    );
    assert_eq!(TEST_CLIENT_EMAIL, fake.service_account().client_email());
}

/// Sends once with `fault` scripted and returns the outcome.
async fn outcome_of(fault: Fault) -> SendOutcome {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    fake.fail_next(1, fault);
    let outcome = client.send(&sos("phone-1")).await;
    assert_eq!(fake.count_for_token("phone-1"), 0);
    outcome
}

#[tokio::test]
async fn unavailable_with_retry_after_in_seconds_is_a_retry_after_that_delay() {
    let outcome = outcome_of(Fault::Unavailable { retry_after: Some("7".into()) }).await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Retry { cause: RetryCause::ServerError { status: 503 }, retry_after: Some(d), .. }
                if d == Duration::from_secs(7)
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn throttling_with_retry_after_as_an_http_date_is_a_retry_until_that_date() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let outcome = outcome_of(Fault::Throttled { retry_after: Some(date) }).await;
    let SendOutcome::Retry { cause: RetryCause::Throttled, retry_after: Some(delay), .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!((Duration::from_secs(28)..=Duration::from_secs(30)).contains(&delay), "{delay:?}");
}

#[tokio::test]
async fn an_internal_error_is_a_retry_without_a_floor() {
    let outcome = outcome_of(Fault::Internal).await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Retry { cause: RetryCause::ServerError { status: 500 }, retry_after: None, .. }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_unregistered_token_is_disabled_and_other_tokens_still_get_through() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    fake.fail_next_for_token("old-phone", usize::MAX, Fault::Unregistered);
    let outcome = client.send(&sos("old-phone")).await;
    assert!(
        matches!(outcome, SendOutcome::TokenInvalid { cause: TokenInvalidCause::Unregistered, .. }),
        "{outcome:?}"
    );
    assert_delivered(&client.send(&sos("new-phone")).await);
    assert_eq!(fake.count_for_token("old-phone"), 0);
}

#[tokio::test]
async fn an_invalid_registration_token_is_disabled() {
    let outcome = outcome_of(Fault::InvalidToken).await;
    assert!(
        matches!(outcome, SendOutcome::TokenInvalid { cause: TokenInvalidCause::InvalidToken, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_invalid_argument_about_the_message_is_permanent_and_keeps_the_token() {
    let outcome = outcome_of(Fault::InvalidArgument).await;
    assert!(matches!(outcome, SendOutcome::Permanent { status: 400, .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_sender_id_mismatch_is_an_auth_error_that_keeps_the_token() {
    let outcome = outcome_of(Fault::SenderIdMismatch).await;
    assert!(
        matches!(outcome, SendOutcome::AuthError { cause: AuthCause::SenderIdMismatch, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_third_party_auth_error_is_the_projects_apns_setup_not_the_token() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    fake.fail_next(1, Fault::ThirdPartyAuth);
    let outcome = client.send(&sos("iphone")).await;
    assert!(
        matches!(outcome, SendOutcome::AuthError { cause: AuthCause::ThirdPartyAuth, .. }),
        "{outcome:?}"
    );
    // No refresh-and-retry: the access token was fine.
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn a_down_server_is_a_network_retry_and_sends_get_through_once_it_is_back() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    assert_delivered(&client.send(&sos("phone-1")).await);

    fake.go_down_for(Duration::from_millis(300));
    let outcome = client.send(&sos("phone-1")).await;
    assert!(matches!(outcome, SendOutcome::Retry { cause: RetryCause::Network, .. }), "{outcome:?}");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_delivered(&client.send(&sos("phone-1")).await);
    assert_eq!(fake.count_for_token("phone-1"), 2);
}

#[tokio::test]
async fn a_down_token_endpoint_is_a_retry_not_an_auth_error() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    fake.go_down_for(Duration::from_secs(60));
    let outcome = client.send(&sos("phone-1")).await;
    assert!(matches!(outcome, SendOutcome::Retry { cause: RetryCause::TokenEndpoint, .. }), "{outcome:?}");
}

#[tokio::test]
async fn retrying_with_backoff_delivers_exactly_once_after_the_faults_clear() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    fake.fail_next(3, Fault::Unavailable { retry_after: None });
    let backoff = Backoff { base: Duration::from_millis(5), cap: Duration::from_millis(40) };
    let message = sos("phone-1");
    let mut attempts = 0;
    loop {
        match client.send(&message).await {
            SendOutcome::Retry { retry_after, .. } => {
                tokio::time::sleep(backoff.delay(attempts, retry_after, &mut rand::thread_rng())).await;
                attempts += 1;
            }
            outcome => {
                assert_delivered(&outcome);
                break;
            }
        }
    }
    assert_eq!(attempts, 3);
    assert_eq!(fake.count_for_collapse_key("a1"), 1);
}

#[tokio::test]
async fn the_fake_refuses_an_oversized_payload_like_fcm_does() {
    let fake = FakeFcm::start().await.unwrap();
    let client = client(&fake);
    let token = client.tokens().access_token().await.unwrap();
    let body = serde_json::json!({"message": {"token": "phone-1", "data": {"blob": "x".repeat(4100)}}});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/projects/trygg-test/messages:send", fake.endpoint()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(error["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT");
    assert!(error["error"]["message"].as_str().unwrap().contains("too big"));
}

#[tokio::test]
async fn the_fake_refuses_a_send_without_a_valid_bearer_token() {
    let fake = FakeFcm::start().await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/projects/trygg-test/messages:send", fake.endpoint()))
        .bearer_auth("made-up")
        .json(&serde_json::json!({"message": {"token": "phone-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
}

#[test]
fn the_builder_refuses_a_payload_over_4_kib_before_it_is_sent() {
    let mut big = alarm("a1", AlarmKind::Fall, "phone-1");
    big.wearer_name = Some("Å".repeat(2100));
    let builder = MessageBuilder { include_wearer_name: true, ..MessageBuilder::default() };
    let error = builder.critical(&big, Utc::now()).unwrap_err();
    assert!(
        matches!(error, MessageError::PayloadTooLarge { limit: 4096, bytes } if bytes > 4096),
        "{error:?}"
    );
}

/// Sends `message` through the fake and returns the `message` object it recorded.
async fn as_received(message: &Message) -> Value {
    let fake = FakeFcm::start().await.unwrap();
    assert_delivered(&client(&fake).send(message).await);
    fake.messages().pop().unwrap().message
}

#[tokio::test]
async fn a_critical_alarm_is_high_priority_time_sensitive_and_collapses_on_the_alarm_id() {
    let message = MessageBuilder::default()
        .critical(&alarm("alarm-7", AlarmKind::ZoneExit, "phone-1"), Utc::now())
        .unwrap();
    let m = as_received(&message).await;
    assert_eq!(m["token"], "phone-1");
    assert_eq!(m["notification"]["title"], "Zonlarm: lämnat trygghetszon");
    assert_eq!(m["android"]["priority"], "HIGH");
    assert_eq!(m["android"]["ttl"], "300s");
    assert_eq!(m["android"]["collapse_key"], "alarm-7");
    assert_eq!(m["android"]["notification"]["channel_id"], "trygg_alarm");
    assert_eq!(m["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(m["apns"]["headers"]["apns-push-type"], "alert");
    assert_eq!(m["apns"]["headers"]["apns-collapse-id"], "alarm-7");
    assert_eq!(m["apns"]["payload"]["aps"]["interruption-level"], "time-sensitive");
    assert_eq!(m["apns"]["payload"]["aps"]["sound"], "default");
    let data = &m["data"];
    assert_eq!(data["alarm_id"], "alarm-7");
    assert_eq!(data["kind"], "zone_exit");
    assert_eq!(data["lat"], "57.708870");
    assert_eq!(data["lon"], "11.974560");
    assert_eq!(data["accuracy_m"], "12");
    let age: i64 = data["position_age_secs"].as_str().unwrap().parse().unwrap();
    assert!((90..95).contains(&age), "{age}");
    assert!(data.as_object().unwrap().values().all(Value::is_string));
}

#[tokio::test]
async fn technical_alerts_are_bundled_into_one_normal_priority_message() {
    let alerts = [
        alarm("b1", AlarmKind::LowBattery, "phone-1"),
        alarm("b2", AlarmKind::DeviceOffline, "phone-1"),
        alarm("b3", AlarmKind::LowBattery, "phone-1"),
    ];
    let message = MessageBuilder::default().technical(&alerts, Utc::now()).unwrap();
    let m = as_received(&message).await;
    assert_eq!(m["notification"]["title"], "Tekniska larm (3)");
    assert_eq!(m["notification"]["body"], "Lågt batteri: 2, Enhet offline: 1");
    assert_eq!(m["android"]["priority"], "NORMAL");
    assert_eq!(m["android"]["collapse_key"], "technical");
    assert_eq!(m["android"]["notification"]["channel_id"], "trygg_technical");
    assert_eq!(m["apns"]["headers"]["apns-priority"], "5");
    assert_eq!(m["apns"]["payload"]["aps"]["interruption-level"], "active");
    assert_eq!(m["data"]["count"], "3");
    assert_eq!(m["data"]["alarm_ids"], "b1,b2,b3");
    assert_eq!(m["data"]["kinds"], "low_battery,device_offline");
    assert!(!m.to_string().contains("Anna"));
}

#[tokio::test]
async fn no_personal_data_is_sent_unless_the_tenant_allows_the_name() {
    let alarm = alarm("a1", AlarmKind::Sos, "phone-1");
    let private = as_received(&MessageBuilder::default().critical(&alarm, Utc::now()).unwrap()).await;
    assert!(!private.to_string().contains("Anna"), "{private}");

    let builder = MessageBuilder { include_wearer_name: true, ..MessageBuilder::default() };
    let named = as_received(&builder.critical(&alarm, Utc::now()).unwrap()).await;
    assert_eq!(named["data"]["wearer_name"], "Anna Andersson");
    assert!(named["notification"]["body"].as_str().unwrap().starts_with("Anna Andersson."));
}
