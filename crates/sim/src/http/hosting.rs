//! The simulated hosting service (CONTRACTS.md §2.1) and its controls.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::{SimState, error, faulty};
use crate::{NodeTiming, Op};
use ports::CreateNode;

/// The hosting service's contract.
pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route("/api/admin/nodes", post(create_node).get(list_nodes))
        .route(
            "/api/admin/nodes/{node_id}",
            get(get_node).delete(delete_node),
        )
}

/// What tests and operators see and set.
pub(super) fn controls() -> Router<SimState> {
    Router::new()
        .route("/_sim/hosting/nodes", get(sim_nodes))
        .route("/_sim/hosting/creates", get(sim_creates))
        .route("/_sim/hosting/deletes", get(sim_deletes))
        .route("/_sim/hosting/timing", put(set_timing))
        .route("/_sim/hosting/foreign", post(add_foreign))
}

async fn create_node(State(st): State<SimState>, body: String) -> Response {
    let req: CreateNode = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if [
        &req.cloud_provider,
        &req.region,
        &req.bundle_id,
        &req.subscription_id,
        &req.user_id,
    ]
    .iter()
    .any(|f| f.is_empty())
    {
        return error(StatusCode::BAD_REQUEST, "missing required field");
    }
    let hosting = st.sim.hosting.clone();
    faulty(&st, Op::CreateNode, || async move {
        let node = hosting.create(&req);
        (
            StatusCode::CREATED,
            Json(json!({"node_id": node.node_id, "status": "creating", "message": "node creation started"})),
        )
            .into_response()
    })
    .await
}

async fn get_node(State(st): State<SimState>, Path(id): Path<String>) -> Response {
    let echo = st.sim.hosting.timing().echo_resource_id;
    faulty(&st, Op::GetNode, || async {
        match st.sim.hosting.node(&id) {
            Some(n) => Json(n.view(chrono::Utc::now(), echo)).into_response(),
            None => error(StatusCode::NOT_FOUND, "node not found"),
        }
    })
    .await
}

async fn delete_node(State(st): State<SimState>, Path(id): Path<String>) -> Response {
    faulty(&st, Op::DeleteNode, || async {
        if st.sim.hosting.delete(&id) {
            Json(json!({"message": "node deleted"})).into_response()
        } else {
            error(StatusCode::NOT_FOUND, "node not found")
        }
    })
    .await
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    purpose: Option<String>,
}

async fn list_nodes(State(st): State<SimState>, Query(q): Query<ListQuery>) -> Response {
    faulty(&st, Op::ListNodes, || async {
        let nodes = st
            .sim
            .hosting
            .views(q.purpose.as_deref(), q.status.as_deref());
        Json(json!({"total": nodes.len(), "nodes": nodes})).into_response()
    })
    .await
}

async fn sim_nodes(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.hosting.nodes())
}

async fn sim_creates(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.hosting.creates())
}

async fn sim_deletes(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.hosting.deletes())
}

async fn set_timing(State(st): State<SimState>, Json(t): Json<NodeTiming>) -> StatusCode {
    st.sim.hosting.set_timing(t);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Foreign {
    purpose: String,
}

async fn add_foreign(State(st): State<SimState>, Json(f): Json<Foreign>) -> impl IntoResponse {
    Json(json!({"node_id": st.sim.hosting.add_foreign_node(&f.purpose)}))
}
