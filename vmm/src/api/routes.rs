//! Firecracker's routes: turns a method, path and body into a [`VmmAction`]. No logic beyond
//! parsing lives here; everything the request means is decided by the controller.

use crate::config::{
    BootSourceConfig, DeadlineConfig, DriveConfig, DriveUpdate, EntropyConfig, LoggerConfig,
    MachineConfig, MachineConfigUpdate, MetricsConfig, NetworkInterfaceConfig,
    NetworkInterfaceUpdate, SerialConfig,
};
use crate::controller::VmmAction;
use crate::snapshot::guest::{SnapshotCreateParams, SnapshotLoadParams};
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// One path the server serves and the methods it accepts there. `{name}` is a path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [Method],
}

/// Everything the server serves; the contract test holds `vmm/api/openapi.yaml` to it.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/",
        methods: &[Method::GET],
    },
    Route {
        path: "/version",
        methods: &[Method::GET],
    },
    Route {
        path: "/boot-source",
        methods: &[Method::PUT],
    },
    Route {
        path: "/machine-config",
        methods: &[Method::GET, Method::PUT, Method::PATCH],
    },
    Route {
        path: "/drives/{drive_id}",
        methods: &[Method::PUT, Method::PATCH],
    },
    Route {
        path: "/network-interfaces/{iface_id}",
        methods: &[Method::PUT, Method::PATCH],
    },
    Route {
        path: "/logger",
        methods: &[Method::PUT],
    },
    Route {
        path: "/metrics",
        methods: &[Method::PUT],
    },
    Route {
        path: "/entropy",
        methods: &[Method::PUT],
    },
    Route {
        path: "/serial",
        methods: &[Method::PUT],
    },
    Route {
        path: "/actions",
        methods: &[Method::PUT],
    },
    Route {
        path: "/vm",
        methods: &[Method::PATCH],
    },
    Route {
        path: "/vm/config",
        methods: &[Method::GET],
    },
    Route {
        path: "/vm/deadline",
        methods: &[Method::PUT],
    },
    Route {
        path: "/stats",
        methods: &[Method::GET],
    },
    Route {
        path: "/snapshot/create",
        methods: &[Method::PUT],
    },
    Route {
        path: "/snapshot/load",
        methods: &[Method::PUT],
    },
];

/// A request that does not make it to the controller.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no such resource: {path}")]
    NotFound { path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        method: Method,
        path: String,
        allowed: &'static [Method],
    },
    #[error("{method} {path} needs a JSON body")]
    MissingBody { method: Method, path: String },
    #[error("invalid body for {method} {path}: {source}")]
    InvalidBody {
        method: Method,
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "the {field} in the body ({body_id:?}) does not match the one in the path ({path_id:?})"
    )]
    IdMismatch {
        field: &'static str,
        path_id: String,
        body_id: String,
    },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
}

/// `PUT /actions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action_type: ActionType,
}

#[derive(Debug, Deserialize)]
enum ActionType {
    InstanceStart,
    SendCtrlAltDel,
    SendPowerButton,
    FlushMetrics,
}

/// `PATCH /vm` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmStateBody {
    state: VmState,
}

#[derive(Debug, Deserialize)]
enum VmState {
    Paused,
    Resumed,
}

/// Finds the route template `path` falls under and the value of its `{param}`, if any.
fn match_route(path: &str) -> Option<(&'static Route, Option<&str>)> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    ROUTES.iter().find_map(|route| {
        let pattern: Vec<&str> = route.path.split('/').skip(1).collect();
        if pattern.len() != segments.len() {
            return None;
        }
        let mut param = None;
        for (p, s) in pattern.iter().zip(&segments) {
            if p.starts_with('{') {
                if s.is_empty() {
                    return None;
                }
                param = Some(*s);
            } else if p != s {
                return None;
            }
        }
        Some((route, param))
    })
}

/// Parses one request into the action it asks for.
pub fn parse(method: &Method, path: &str, body: &[u8]) -> Result<VmmAction, RequestError> {
    let (route, param) = match_route(path).ok_or_else(|| RequestError::NotFound {
        path: path.to_owned(),
    })?;
    if !route.methods.contains(method) {
        return Err(RequestError::MethodNotAllowed {
            method: method.clone(),
            path: path.to_owned(),
            allowed: route.methods,
        });
    }
    let json = JsonBody { method, path, body };
    let param = param.unwrap_or_default();
    let action = match (route.path, method.as_str()) {
        ("/", "GET") => VmmAction::GetInstanceInfo,
        ("/version", "GET") => VmmAction::GetVersion,
        ("/vm/config", "GET") => VmmAction::GetVmConfig,
        ("/stats", "GET") => VmmAction::GetStats,
        ("/machine-config", "GET") => VmmAction::GetMachineConfig,
        ("/machine-config", "PUT") => VmmAction::PutMachineConfig(json.parse::<MachineConfig>()?),
        ("/machine-config", "PATCH") => {
            VmmAction::PatchMachineConfig(json.parse::<MachineConfigUpdate>()?)
        }
        ("/boot-source", "PUT") => VmmAction::PutBootSource(json.parse::<BootSourceConfig>()?),
        ("/drives/{drive_id}", "PUT") => {
            let drive: DriveConfig = json.parse()?;
            same_id("drive_id", param, &drive.drive_id)?;
            VmmAction::PutDrive(drive)
        }
        ("/drives/{drive_id}", "PATCH") => {
            let update: DriveUpdate = json.parse()?;
            same_id("drive_id", param, &update.drive_id)?;
            VmmAction::PatchDrive(update)
        }
        ("/network-interfaces/{iface_id}", "PUT") => {
            let iface: NetworkInterfaceConfig = json.parse()?;
            same_id("iface_id", param, &iface.iface_id)?;
            VmmAction::PutNetworkInterface(iface)
        }
        ("/network-interfaces/{iface_id}", "PATCH") => {
            let update: NetworkInterfaceUpdate = json.parse()?;
            same_id("iface_id", param, &update.iface_id)?;
            VmmAction::PatchNetworkInterface(update)
        }
        ("/snapshot/create", "PUT") => {
            VmmAction::CreateSnapshot(json.parse::<SnapshotCreateParams>()?)
        }
        ("/snapshot/load", "PUT") => VmmAction::LoadSnapshot(json.parse::<SnapshotLoadParams>()?),
        ("/vm/deadline", "PUT") => VmmAction::PutDeadline(json.parse::<DeadlineConfig>()?),
        ("/logger", "PUT") => VmmAction::PutLogger(json.parse::<LoggerConfig>()?),
        ("/metrics", "PUT") => VmmAction::PutMetrics(json.parse::<MetricsConfig>()?),
        ("/entropy", "PUT") => VmmAction::PutEntropy(json.parse::<EntropyConfig>()?),
        ("/serial", "PUT") => VmmAction::PutSerial(json.parse::<SerialConfig>()?),
        ("/actions", "PUT") => match json.parse::<ActionBody>()?.action_type {
            ActionType::InstanceStart => VmmAction::InstanceStart,
            ActionType::SendCtrlAltDel => VmmAction::SendCtrlAltDel,
            ActionType::SendPowerButton => VmmAction::SendPowerButton,
            ActionType::FlushMetrics => VmmAction::FlushMetrics,
        },
        ("/vm", "PATCH") => match json.parse::<VmStateBody>()?.state {
            VmState::Paused => VmmAction::Pause,
            VmState::Resumed => VmmAction::Resume,
        },
        // ROUTES lists a method this match does not handle: refuse it rather than guess.
        _ => {
            return Err(RequestError::MethodNotAllowed {
                method: method.clone(),
                path: path.to_owned(),
                allowed: route.methods,
            })
        }
    };
    Ok(action)
}

struct JsonBody<'a> {
    method: &'a Method,
    path: &'a str,
    body: &'a [u8],
}

impl JsonBody<'_> {
    fn parse<T: DeserializeOwned>(&self) -> Result<T, RequestError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(RequestError::MissingBody {
                method: self.method.clone(),
                path: self.path.to_owned(),
            });
        }
        serde_json::from_slice(self.body).map_err(|source| RequestError::InvalidBody {
            method: self.method.clone(),
            path: self.path.to_owned(),
            source,
        })
    }
}

fn same_id(field: &'static str, path_id: &str, body_id: &str) -> Result<(), RequestError> {
    if path_id == body_id {
        Ok(())
    } else {
        Err(RequestError::IdMismatch {
            field,
            path_id: path_id.to_owned(),
            body_id: body_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            parse(&Method::GET, "/", b"").unwrap(),
            VmmAction::GetInstanceInfo
        );
        assert_eq!(
            parse(&Method::GET, "/vm/config", b"").unwrap(),
            VmmAction::GetVmConfig
        );
        assert!(matches!(
            parse(&Method::GET, "/nope", b""),
            Err(RequestError::NotFound { .. })
        ));
        assert!(matches!(
            parse(&Method::GET, "/drives/", b""),
            Err(RequestError::NotFound { .. })
        ));
        assert!(matches!(
            parse(&Method::GET, "/drives/a/b", b""),
            Err(RequestError::NotFound { .. })
        ));
        assert!(matches!(
            parse(&Method::DELETE, "/machine-config", b""),
            Err(RequestError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn bodies() {
        let body = br#"{"drive_id":"root","path_on_host":"/r.img","is_root_device":true}"#;
        let VmmAction::PutDrive(d) = parse(&Method::PUT, "/drives/root", body).unwrap() else {
            panic!("PUT /drives parses to PutDrive");
        };
        assert!(d.is_root_device);
        let err = parse(&Method::PUT, "/drives/other", body).unwrap_err();
        assert!(matches!(err, RequestError::IdMismatch { .. }), "{err}");
        let err = parse(
            &Method::PUT,
            "/machine-config",
            br#"{"vcpu_count":2,"mem_size_mib":128,"x":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        let err = parse(&Method::PUT, "/machine-config", b" ").unwrap_err();
        assert!(matches!(err, RequestError::MissingBody { .. }), "{err}");
        let err = parse(&Method::PUT, "/actions", br#"{"action_type":"Explode"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Explode`"),
            "{err}"
        );
        assert_eq!(
            parse(&Method::PATCH, "/vm", br#"{"state":"Paused"}"#).unwrap(),
            VmmAction::Pause
        );
        assert_eq!(
            parse(&Method::PUT, "/vm/deadline", br#"{"pause_in_ms":8000}"#).unwrap(),
            VmmAction::PutDeadline(DeadlineConfig { pause_in_ms: 8000 })
        );
        let patch =
            br#"{"drive_id":"root","rate_limiter":{"bandwidth":{"size":1000,"refill_time":100}}}"#;
        let VmmAction::PatchDrive(u) = parse(&Method::PATCH, "/drives/root", patch).unwrap() else {
            panic!("PATCH /drives parses to PatchDrive");
        };
        let bw = u.rate_limiter.and_then(|r| r.bandwidth).unwrap();
        assert_eq!(
            (bw.size, bw.one_time_burst, bw.refill_time),
            (1000, None, 100)
        );
        let err = parse(&Method::PATCH, "/drives/other", patch).unwrap_err();
        assert!(matches!(err, RequestError::IdMismatch { .. }), "{err}");
        let patch = br#"{"iface_id":"eth0","tx_rate_limiter":{"ops":{"size":10,"refill_time":1000,"one_time_burst":5}}}"#;
        assert!(matches!(
            parse(&Method::PATCH, "/network-interfaces/eth0", patch).unwrap(),
            VmmAction::PatchNetworkInterface(_)
        ));
        let err = parse(
            &Method::PATCH,
            "/network-interfaces/eth0",
            br#"{"iface_id":"eth0","rx_rate_limiter":{"bandwidth":{"size":1}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("refill_time"), "{err}");
        assert_eq!(
            parse(
                &Method::PUT,
                "/actions",
                br#"{"action_type":"InstanceStart"}"#
            )
            .unwrap(),
            VmmAction::InstanceStart
        );
    }
}
