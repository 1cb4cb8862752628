//! Renders outcomes as HTTP responses. This is the one place errors become status codes:
//! every failure is `{"fault_message": "..."}` as Firecracker's clients expect.

use super::routes::RequestError;
use crate::controller::{VmmActionError, VmmData};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub type HttpResponse = Response<Full<Bytes>>;

/// Anything that ends a request without success.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Action(#[from] VmmActionError),
    /// A bug or a lost worker thread, not the client's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct FaultBody<'a> {
    fault_message: &'a str,
}

/// The error → HTTP mapping.
pub fn fault(fault: &Fault) -> HttpResponse {
    let status = match fault {
        Fault::Request(RequestError::NotFound { .. }) => StatusCode::NOT_FOUND,
        Fault::Request(RequestError::MethodNotAllowed { .. }) => StatusCode::METHOD_NOT_ALLOWED,
        Fault::Request(RequestError::BodyTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        Fault::Request(_) => StatusCode::BAD_REQUEST,
        // Firecracker answers every refused action with 400 and a fault_message.
        Fault::Action(_) => StatusCode::BAD_REQUEST,
        Fault::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = fault.to_string();
    let mut response = json(
        status,
        &FaultBody {
            fault_message: &message,
        },
    );
    if let Fault::Request(RequestError::MethodNotAllowed { allowed, .. }) = fault {
        let list = allowed
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&list) {
            response.headers_mut().insert(ALLOW, value);
        }
    }
    response
}

/// 204 for actions without data, 200 + JSON for reads.
pub fn success(data: &VmmData) -> HttpResponse {
    match data {
        VmmData::Empty => empty(StatusCode::NO_CONTENT),
        VmmData::InstanceInfo(info) => json(StatusCode::OK, info),
        VmmData::Version(version) => json(StatusCode::OK, version),
        VmmData::VmConfig(config) => json(StatusCode::OK, config),
        VmmData::MachineConfig(mc) => json(StatusCode::OK, mc),
        VmmData::Stats(stats) => json(StatusCode::OK, stats),
    }
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        // Our types serialize infallibly (no maps with non-string keys); say so if not.
        Err(e) => {
            let mut response = empty(StatusCode::INTERNAL_SERVER_ERROR);
            *response.body_mut() = Full::new(Bytes::from(format!(
                "{{\"fault_message\":\"cannot serialize the response: {}\"}}",
                e.to_string().replace(['"', '\\'], "'")
            )));
            response
        }
    }
}
