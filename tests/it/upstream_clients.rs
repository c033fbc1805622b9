//! The HTTP clients against wiremock: request shape, error statuses, timeouts, garbage.

use std::time::Duration;

use fulfillment::domain::product::HOSTING;
use fulfillment::ports::{CreateNode, FulfillmentCallback, Hosting, Subscriptions, UpstreamError};
use fulfillment::upstream::{HostingClient, SubscriptionsClient, http_client};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn hosting(server: &MockServer, timeout: Duration) -> HostingClient {
    HostingClient::new(
        http_client(timeout),
        server.uri().parse().unwrap(),
        "admin-key".into(),
    )
}

fn subscriptions(server: &MockServer) -> SubscriptionsClient {
    SubscriptionsClient::new(
        http_client(Duration::from_secs(2)),
        server.uri().parse().unwrap(),
        "secret".into(),
    )
}

fn create_request() -> CreateNode {
    CreateNode {
        cloud_provider: "lightsail".into(),
        region: "us-east-1".into(),
        bundle_id: "small_3_0".into(),
        subscription_id: "sub-1".into(),
        user_id: "u-1".into(),
        resource_id: "r-1".into(),
        callback_url: "http://us/api/callback/node".into(),
        callback_token: "tok".into(),
    }
}

#[tokio::test]
async fn create_sends_the_contract_and_reads_the_node_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/admin/nodes"))
        .and(header("X-Admin-Key", "admin-key"))
        .and(body_json(
            json!({"cloud_provider": "lightsail", "region": "us-east-1", "bundle_id": "small_3_0",
            "subscription_id": "sub-1", "user_id": "u-1", "resource_id": "r-1",
            "callback_url": "http://us/api/callback/node", "callback_token": "tok"}),
        ))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"node_id": "n-1", "status": "creating", "message": "ok"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let id = hosting(&server, Duration::from_secs(2))
        .create_node(&create_request())
        .await
        .unwrap();
    assert_eq!(id, "n-1");
}

/// A canned answer, what error it must become, and whether that error is retryable.
type Case = (ResponseTemplate, fn(&UpstreamError) -> bool, bool);

#[tokio::test]
async fn create_failures_say_whether_a_retry_can_help() {
    let cases: Vec<Case> = vec![
        (
            ResponseTemplate::new(500),
            |e| matches!(e, UpstreamError::Status { status: 500, .. }),
            true,
        ),
        (
            ResponseTemplate::new(503),
            |e| matches!(e, UpstreamError::Status { status: 503, .. }),
            true,
        ),
        (
            ResponseTemplate::new(429),
            |e| matches!(e, UpstreamError::Status { status: 429, .. }),
            true,
        ),
        (
            ResponseTemplate::new(400).set_body_string("bad bundle"),
            |e| matches!(e, UpstreamError::Status { status: 400, body } if body == "bad bundle"),
            false,
        ),
        (
            ResponseTemplate::new(401),
            |e| matches!(e, UpstreamError::Status { status: 401, .. }),
            false,
        ),
        (
            ResponseTemplate::new(200).set_body_string("<html>oops"),
            |e| matches!(e, UpstreamError::InvalidBody(_)),
            true,
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"node_id": ""})),
            |e| matches!(e, UpstreamError::InvalidBody(_)),
            true,
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_millis(800)),
            |e| matches!(e, UpstreamError::Timeout),
            true,
        ),
    ];
    for (i, (response, expected, retryable)) in cases.into_iter().enumerate() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&server)
            .await;
        let err = hosting(&server, Duration::from_millis(300))
            .create_node(&create_request())
            .await
            .unwrap_err();
        assert!(expected(&err), "case {i}: {err:?}");
        assert_eq!(err.is_retryable(), retryable, "case {i}: {err:?}");
    }
    // Nothing listening at all.
    let client = HostingClient::new(
        http_client(Duration::from_millis(300)),
        "http://127.0.0.1:9".parse().unwrap(),
        "k".into(),
    );
    let err = client.create_node(&create_request()).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::Connect(_)) && err.is_retryable(),
        "{err:?}"
    );
}

#[tokio::test]
async fn get_treats_placeholders_as_absent_and_404_as_unknown() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/admin/nodes/n-1"))
        .and(header("X-Admin-Key", "admin-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"node_id": "n-1", "public_ip": "",
            "cloud_provider": "lightsail", "cloud_region": "us-east-1", "status": "installing", "node_api_key": "",
            "vless_port": 0, "ss_port": 0, "public_key": "", "short_id": "", "error_message": "", "created_at": "2026-10-22T21:55:00Z"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/admin/nodes/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let client = hosting(&server, Duration::from_secs(2));
    let node = client.get_node("n-1").await.unwrap().unwrap();
    assert_eq!(node.status, "installing");
    assert_eq!(
        (
            node.public_ip,
            node.node_api_key,
            node.vless_port,
            node.error_message
        ),
        (None, None, None, None)
    );
    assert!(node.created_at.is_some());
    assert_eq!(client.get_node("gone").await.unwrap(), None);
}

#[tokio::test]
async fn delete_counts_404_as_gone_and_reports_server_errors() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/api/admin/nodes/a"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/admin/nodes/b"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/admin/nodes/c"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/admin/nodes/d"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let client = hosting(&server, Duration::from_secs(2));
    client.delete_node("a").await.unwrap();
    client.delete_node("b").await.unwrap();
    client.delete_node("c").await.unwrap();
    assert!(client.delete_node("d").await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn list_asks_for_our_purpose_only() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/admin/nodes"))
        .and(query_param("purpose", "obox"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 2, "nodes": [
            {"node_id": "n-1", "status": "active", "purpose": "obox", "subscription_id": "s", "user_id": "u", "resource_id": "r-1"},
            {"node_id": "n-2", "status": "creating", "purpose": "obox", "subscription_id": "s2", "user_id": "u2"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let nodes = hosting(&server, Duration::from_secs(2))
        .list_nodes()
        .await
        .unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        (
            nodes[0].resource_id.as_deref(),
            nodes[1].resource_id.as_deref()
        ),
        (Some("r-1"), None)
    );
}

#[tokio::test]
async fn active_subscription_lookup_escapes_the_user_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/internal/users/apple_000123.abc/active/obox/hosting",
        ))
        .and(header("X-Internal-Secret", "secret"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"subscription_id": "sub_1", "status": "active",
            "plan_tier": "premium", "expires_at": "2026-10-22T21:55:00Z", "auto_renew": true})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/internal/users/a%2Fb/active/obox/hosting"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/internal/users/garbage/active/obox/hosting"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"subscription_id\": 5"))
        .mount(&server)
        .await;
    let client = subscriptions(&server);
    let s = client
        .active("apple_000123.abc", HOSTING)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            s.subscription_id.as_str(),
            s.plan_tier.as_str(),
            s.auto_renew
        ),
        ("sub_1", "premium", true)
    );
    assert_eq!(client.active("a/b", HOSTING).await.unwrap(), None);
    assert!(matches!(
        client.active("garbage", HOSTING).await,
        Err(UpstreamError::InvalidBody(_))
    ));
}

#[tokio::test]
async fn callbacks_are_acknowledged_by_any_2xx_only() {
    let server = MockServer::start().await;
    let cb = FulfillmentCallback {
        subscription_id: "sub-1".into(),
        app: "obox".into(),
        status: "deleted".into(),
        reason: Some("user_initiated".into()),
        error: None,
        message: Some("hosting node deleted".into()),
        resource_id: Some("0190a0e0-0000-7000-8000-000000000001".into()),
    };
    Mock::given(method("POST"))
        .and(path("/api/internal/fulfillment/callback"))
        .and(header("X-Internal-Secret", "secret"))
        .and(body_json(
            json!({"subscription_id": "sub-1", "app": "obox", "status": "deleted",
            "reason": "user_initiated", "message": "hosting node deleted",
            "resource_id": "0190a0e0-0000-7000-8000-000000000001"}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let client = subscriptions(&server);
    client.callback(&cb).await.unwrap();
    let err = client.callback(&cb).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

fn vpn(server: &MockServer) -> fulfillment::upstream::VpnClient {
    fulfillment::upstream::VpnClient::new(
        http_client(Duration::from_millis(500)),
        server.uri().parse().unwrap(),
        "secret".into(),
    )
}

fn vpn_order() -> fulfillment::ports::CreateVpnUser {
    fulfillment::ports::CreateVpnUser {
        uuid: "11111111-1111-1111-1111-111111111111".into(),
        email: "a@example.com".into(),
        auth_user_id: "u-1".into(),
        protocols: vec!["vless".into(), "shadowsocks".into()],
        ss_password: "pw".into(),
        traffic_limit: 536_870_912_000,
        expire_at: "2026-12-25T00:00:00Z".parse().unwrap(),
        service_tier: "premium".into(),
    }
}

#[tokio::test]
async fn vpn_create_sends_the_contract_and_trusts_the_returned_uuid() {
    use fulfillment::ports::VpnManager;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/users"))
        .and(header("X-Internal-Secret", "secret"))
        .and(body_json(json!({"uuid": "11111111-1111-1111-1111-111111111111", "email": "a@example.com",
            "auth_user_id": "u-1", "protocols": ["vless", "shadowsocks"], "ss_password": "pw",
            "traffic_limit": 536_870_912_000_i64, "expire_at": "2026-12-25T00:00:00Z", "service_tier": "premium"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"uuid": "22222222-2222-2222-2222-222222222222",
            "email": "a@example.com", "ss_password": "old", "traffic_limit": 1, "traffic_used": 7,
            "expire_at": "2026-11-30T00:00:00Z", "enabled": true})))
        .expect(1)
        .mount(&server)
        .await;
    let user = vpn(&server).create_user(&vpn_order()).await.unwrap();
    assert_eq!(
        user.uuid, "22222222-2222-2222-2222-222222222222",
        "the VPN manager's uuid is authoritative"
    );
    assert_eq!((user.traffic_used, user.enabled), (7, true));
    assert_eq!(
        user.expire_at,
        Some("2026-11-30T00:00:00Z".parse().unwrap())
    );
}

#[tokio::test]
async fn vpn_calls_map_status_codes_timeouts_and_garbage() {
    use fulfillment::ports::{VpnManager, VpnUserUpdate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/users/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/users/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/users/u"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/users/u"))
        .and(body_json(
            json!({"expire_at": "2026-12-25T00:00:00Z", "enabled": true}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/users/bad"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/subscribe"))
        .and(body_json(json!({"device_id": "u-1"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"uuid": "u", "traffic_limit": 10, "traffic_used": 1,
            "expire_at": "2026-12-25T00:00:00Z", "enabled": true,
            "protocols": [{"protocol": "vless", "url": "vless://u@h:443", "node": "primary"}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/users/u/sync"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/users/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;

    let client = vpn(&server);
    assert_eq!(client.get_user("gone").await.unwrap(), None);
    client.delete_user("gone").await.unwrap();
    client.delete_user("u").await.unwrap();
    let update = VpnUserUpdate {
        expire_at: Some("2026-12-25T00:00:00Z".parse().unwrap()),
        enabled: Some(true),
        ..Default::default()
    };
    client.update_user("u", &update).await.unwrap();
    assert!(
        client
            .update_user("bad", &update)
            .await
            .unwrap_err()
            .is_retryable()
    );
    let sub = client.subscribe("u-1").await.unwrap();
    assert_eq!(
        (
            sub.uuid.as_str(),
            sub.protocols.len(),
            sub.protocols[0].node.as_str()
        ),
        ("u", 1, "primary")
    );
    assert!(matches!(
        client.sync("u").await,
        Err(UpstreamError::InvalidBody(_))
    ));
    assert!(matches!(
        client.get_user("slow").await,
        Err(UpstreamError::Timeout)
    ));
}

#[tokio::test]
async fn the_vpn_simulator_over_http_keeps_the_contract() {
    use fulfillment::ports::{VpnManager, VpnUserUpdate};
    let sims = crate::helpers::SimServer::start(fulfillment::sim::NodeTiming::default()).await;
    let client = fulfillment::upstream::VpnClient::new(
        http_client(Duration::from_secs(2)),
        sims.url.parse().unwrap(),
        crate::helpers::INTERNAL_SECRET.into(),
    );
    let first = client.create_user(&vpn_order()).await.unwrap();
    assert_eq!(first.uuid, vpn_order().uuid);
    let mut again = vpn_order();
    again.uuid = "33333333-3333-3333-3333-333333333333".into();
    again.traffic_limit = 1;
    let second = client.create_user(&again).await.unwrap();
    assert_eq!(
        second.uuid, first.uuid,
        "de-duplicated by auth_user_id, answering with the existing uuid"
    );
    assert_eq!(
        second.traffic_limit,
        vpn_order().traffic_limit,
        "and without applying the order"
    );
    client
        .update_user(
            &first.uuid,
            &VpnUserUpdate {
                traffic_limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .get_user(&first.uuid)
            .await
            .unwrap()
            .unwrap()
            .traffic_limit,
        5
    );
    let sub = client.subscribe("u-1").await.unwrap();
    let protocols: Vec<_> = sub.protocols.iter().map(|p| p.protocol.as_str()).collect();
    assert_eq!(protocols, ["vless", "shadowsocks"]);
    assert_eq!(
        client.sync(&first.uuid).await.unwrap(),
        sub,
        "a read changes nothing"
    );
    client.delete_user(&first.uuid).await.unwrap();
    assert_eq!(client.get_user(&first.uuid).await.unwrap(), None);
    assert!(client.subscribe("u-1").await.is_err());
    assert_eq!(sims.sim.vpn.creates().len(), 2);
    // Without the secret the simulator refuses, like the real service.
    let anonymous = fulfillment::upstream::VpnClient::new(
        http_client(Duration::from_secs(2)),
        sims.url.parse().unwrap(),
        "wrong".into(),
    );
    assert!(matches!(
        anonymous.get_user("x").await,
        Err(UpstreamError::Status { status: 401, .. })
    ));
}
