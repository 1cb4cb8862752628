//! The one place where errors become replies. Domain errors map to a [`Fault`] (a status and a
//! message); [`render`] writes it in the shape the calling service's clients parse:
//!
//! - Nova and Cinder: `{"<name>": {"code": 404, "message": "..."}}`, the name by status
//!   (`itemNotFound`, `badRequest`, ...; `computeFault` for the rest);
//! - Keystone: `{"error": {"code", "title", "message"}}`, also every 401 whatever the
//!   service, since those come from token validation in front of all services;
//! - Glance: webob's plain-text page, `404 Not Found\n\n<message>\n\n   `;
//! - Neutron: `{"NeutronError": {"type": "HTTPNotFound", "message", "detail": ""}}`.

use super::request::{Reply, ReplyBody};
use super::ServiceKind;
use crate::compute::aggregates::AggregateError;
use crate::compute::flavors::FlavorError;
use crate::compute::keypairs::KeyPairError;
use crate::compute::server_groups::ServerGroupError;
use crate::compute::servers::boot_source::BootSourceError;
use crate::compute::servers::ServerError;
use crate::identity::IdentityError;
use crate::image::ImageError;
use crate::network::NetworkError;
use crate::quota::QuotaError;
use crate::store::StorageError;
use crate::volume::VolumeError;
use hyper::StatusCode;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub status: StatusCode,
    pub message: String,
    /// Neutron's error `type` (`NetworkNotFound`, ...); None renders webob's class name.
    pub neutron_type: Option<String>,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl Fault {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Fault {
        Fault {
            status,
            message: message.into(),
            neutron_type: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::UNAUTHORIZED, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::CONFLICT, m)
    }
    /// A failure the client cannot fix; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Fault {
        tracing::error!("internal error: {detail}");
        Fault::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unexpected API Error. Please report this at the appliance's administrator and \
             attach the outpostd log if possible.",
        )
    }
}

impl From<StorageError> for Fault {
    fn from(e: StorageError) -> Fault {
        Fault::internal(e)
    }
}

impl From<IdentityError> for Fault {
    fn from(e: IdentityError) -> Fault {
        use IdentityError as E;
        let status = match &e {
            E::Unauthenticated | E::InvalidCredentials | E::UnsupportedMethod => {
                StatusCode::UNAUTHORIZED
            }
            E::MissingField { .. } | E::InvalidField { .. } => StatusCode::BAD_REQUEST,
            E::TokenNotFound | E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Duplicate { .. } => StatusCode::CONFLICT,
            E::LoginRefused(crate::identity::logins::LoginRefused::Locked(_)) => {
                StatusCode::UNAUTHORIZED
            }
            E::LoginRefused(_) => StatusCode::TOO_MANY_REQUESTS,
            E::PasswordHash(_) | E::Random(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<FlavorError> for Fault {
    fn from(e: FlavorError) -> Fault {
        use FlavorError as E;
        let status = match &e {
            E::NotFound(_) | E::ExtraSpecNotFound { .. } => StatusCode::NOT_FOUND,
            E::NameExists(_) | E::IdExists(_) => StatusCode::CONFLICT,
            E::InvalidField { .. } | E::MarkerNotFound(_) => StatusCode::BAD_REQUEST,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Random(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<ServerGroupError> for Fault {
    fn from(e: ServerGroupError) -> Fault {
        use ServerGroupError as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::InvalidField { .. } | E::RulesNeedAntiAffinity => StatusCode::BAD_REQUEST,
            E::Forbidden(_) | E::QuotaExceeded => StatusCode::FORBIDDEN,
            E::Random(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<AggregateError> for Fault {
    fn from(e: AggregateError) -> Fault {
        use AggregateError as E;
        let status = match &e {
            E::NotFound(_) | E::HostNotFound(_) | E::NoSuchMember { .. } => StatusCode::NOT_FOUND,
            E::NameExists(_) | E::HostExists { .. } | E::ZoneConflictOnAdd { .. } => {
                StatusCode::CONFLICT
            }
            // Nova answers 400 to an update its hosts' zones refuse and to deleting an
            // aggregate that still has hosts (InvalidAggregateAction).
            E::ZoneConflictOnUpdate { .. }
            | E::NotEmpty(_)
            | E::InvalidField { .. }
            | E::NotAnId => StatusCode::BAD_REQUEST,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Random(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<KeyPairError> for Fault {
    fn from(e: KeyPairError) -> Fault {
        use KeyPairError as E;
        let status = match &e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::NameExists(_) => StatusCode::CONFLICT,
            E::Invalid(_) | E::X509Unsupported | E::MarkerNotFound(_) => StatusCode::BAD_REQUEST,
            E::Forbidden(_) | E::QuotaExceeded => StatusCode::FORBIDDEN,
            E::Random(_) | E::Encode(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<ServerError> for Fault {
    fn from(e: ServerError) -> Fault {
        use ServerError as E;
        // Cinder's own mapping: an unknown volume is 404, one that cannot be attached 400.
        let e = match e {
            E::Volume(v) => return Fault::from(v),
            E::Quota(q) => return Fault::from(q),
            e => e,
        };
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::InvalidField { .. }
            | E::BadRequest(_)
            | E::FlavorNotFound(_)
            | E::VolumesUnavailable(_)
            | E::MarkerNotFound(_) => StatusCode::BAD_REQUEST,
            E::Image(BootSourceError::ImageNotFound(_) | BootSourceError::Unusable { .. }) => {
                StatusCode::BAD_REQUEST
            }
            E::InvalidState { .. } | E::VolumeOpen { .. } | E::Conflict(_) | E::NoRoom(_) => {
                StatusCode::CONFLICT
            }
            E::NotAttached { .. } | E::ItemNotFound(_) => StatusCode::NOT_FOUND,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Image(_)
            | E::Volume(_)
            | E::Random(_)
            | E::Storage(_)
            | E::Fleet(_)
            | E::Network(_)
            | E::Quota(_)
            | E::Console { .. } => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<ImageError> for Fault {
    fn from(e: ImageError) -> Fault {
        use ImageError as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::InvalidField { .. }
            | E::BadPatch(_)
            | E::MarkerNotFound(_)
            | E::FormatsUnset
            | E::Interrupted { .. }
            | E::Sha256Mismatch { .. } => StatusCode::BAD_REQUEST,
            E::ReadOnly(_) | E::Reserved(_) | E::Forbidden(_) | E::Protected(_) => {
                StatusCode::FORBIDDEN
            }
            E::InUse { .. }
            | E::IdExists(_)
            | E::NotQueued { .. }
            | E::NotActive(_)
            | E::NoSuchProperty(_)
            | E::AlreadyPresent(_)
            | E::MemberExists { .. } => StatusCode::CONFLICT,
            E::TooManyProperties(_) | E::TooManyMembers(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::Data(d) => match image_data_status(d) {
                Some(s) => s,
                None => return Fault::internal(e),
            },
            E::Random(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

/// The status for an image store error the client caused; None for the host's failures.
fn image_data_status(e: &outpost_image_store::ImageError) -> Option<StatusCode> {
    use outpost_image_store::qemu_img::QemuImgError as Q;
    use outpost_image_store::ImageError as S;
    Some(match e {
        S::NotFound { .. } => StatusCode::NOT_FOUND,
        S::AlreadyExists { .. } => StatusCode::CONFLICT,
        S::TooLarge { .. } | S::VirtualSizeTooLarge { .. } | S::NoSpace { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        S::Id(_)
        | S::UnsupportedFormat { .. }
        | S::Empty { .. }
        | S::BadExpectedChecksum { .. }
        | S::ChecksumMismatch { .. }
        | S::FormatMismatch { .. }
        | S::UnsupportedContent { .. }
        | S::Qcow2 { .. }
        | S::Qcow2References { .. }
        | S::Qcow2Encrypted { .. } => StatusCode::BAD_REQUEST,
        // qemu-img refusing or choking on the data is the data's fault; not running is ours.
        S::QemuImg { source, .. } => match source {
            Q::Failed { .. } | Q::Killed { .. } | Q::BadInfo { .. } => StatusCode::BAD_REQUEST,
            Q::Spawn { .. } | Q::RelativePath { .. } => return None,
        },
        S::File(_) | S::Io { .. } | S::UploadFailed { .. } | S::ConvertedSizeMismatch { .. } => {
            return None
        }
    })
}

impl From<NetworkError> for Fault {
    fn from(e: NetworkError) -> Fault {
        use NetworkError as E;
        let status = match &e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::InvalidInput(_) | E::BadRequest { .. } => StatusCode::BAD_REQUEST,
            E::Conflict { .. } => StatusCode::CONFLICT,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Random(_) | E::Storage(_) | E::Internal(_) => return Fault::internal(e),
        };
        let mut f = Fault::new(status, e.to_string());
        f.neutron_type = Some(e.neutron_type());
        f
    }
}

impl From<QuotaError> for Fault {
    fn from(e: QuotaError) -> Fault {
        use QuotaError as E;
        let status = match &e {
            // Nova's OverQuota; Cinder's 413 and Neutron's 409 come from their own errors.
            E::Exceeded { .. } | E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::UnknownResource(..) | E::BelowUnlimited { .. } => StatusCode::BAD_REQUEST,
            E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl From<VolumeError> for Fault {
    fn from(e: VolumeError) -> Fault {
        use outpost_image_store::VolumeError as D;
        use VolumeError as E;
        let status = match &e {
            // Cinder's MarkerNotFound is one of its NotFound exceptions, unlike Nova's 400.
            E::NotFound(_)
            | E::SnapshotNotFound(_)
            | E::TypeNotFound(_)
            | E::MarkerNotFound(_)
            | E::MetadataNotFound { .. } => StatusCode::NOT_FOUND,
            E::InvalidInput(_) | E::InvalidVolume(_) | E::InvalidSnapshot(_) | E::NoHome(_) => {
                StatusCode::BAD_REQUEST
            }
            E::InvalidImage(i) => match Fault::from_image_ref(i) {
                Some(s) => s,
                None => return Fault::internal(e),
            },
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::OverQuota(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::Disk(d) => match d {
                D::Id(_) | D::Size(_) | D::SmallerThanSource { .. } | D::CannotShrink { .. } => {
                    StatusCode::BAD_REQUEST
                }
                D::NotFound { .. } => StatusCode::NOT_FOUND,
                D::AlreadyExists { .. } => StatusCode::CONFLICT,
                D::NoSpace { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                D::File(_) | D::Io { .. } | D::Source { .. } => return Fault::internal(e),
            },
            E::Worker(_) | E::Random(_) | E::Storage(_) => return Fault::internal(e),
        };
        Fault::new(status, e.to_string())
    }
}

impl Fault {
    /// Cinder answers any problem with `imageRef` (missing, not visible, not active) with 400;
    /// None for the host's failures.
    fn from_image_ref(e: &ImageError) -> Option<StatusCode> {
        match e {
            ImageError::Random(_) | ImageError::Storage(_) => None,
            ImageError::Data(d) => image_data_status(d).map(|_| StatusCode::BAD_REQUEST),
            _ => Some(StatusCode::BAD_REQUEST),
        }
    }
}

/// Nova's (and Cinder's) fault names, from their WSGI fault wrappers.
fn nova_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 => "overLimit",
        415 => "badMediaType",
        429 => "overLimit",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// webob's exception class names, which Neutron reports as the error `type`.
fn webob_name(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    format!("HTTP{}", reason.replace([' ', '-'], ""))
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// The reply for `fault` in `service`'s shape; `None` (no service matched) uses Keystone's.
pub fn render(service: Option<ServiceKind>, fault: &Fault) -> Reply {
    let status = fault.status;
    let code = status.as_u16();
    let keystone = || {
        Reply::json(
            status,
            json!({"error": {"code": code, "title": title(status), "message": fault.message}}),
        )
    };
    if status == StatusCode::UNAUTHORIZED {
        return keystone();
    }
    match service {
        Some(ServiceKind::Compute | ServiceKind::Volume) => Reply::json(
            status,
            json!({ nova_name(status): {"code": code, "message": fault.message} }),
        ),
        Some(ServiceKind::Network) => Reply::json(
            status,
            json!({"NeutronError": {
                "type": fault.neutron_type.clone().unwrap_or_else(|| webob_name(status)),
                "message": fault.message,
                "detail": "",
            }}),
        ),
        Some(ServiceKind::Image) => Reply {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=UTF-8".into())],
            body: ReplyBody::Text(format!(
                "{code} {}\n\n{}\n\n   ",
                title(status),
                fault.message
            )),
        },
        Some(ServiceKind::Identity) | None => keystone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Reply) -> serde_json::Value {
        match &r.body {
            ReplyBody::Json(v) => v.clone(),
            other => panic!("not JSON: {other:?}"),
        }
    }

    #[test]
    fn each_service_gets_its_own_shape() {
        let f = Fault::not_found("Flavor x could not be found.");
        let nova = render(Some(ServiceKind::Compute), &f);
        assert_eq!(
            body(&nova),
            json!({"itemNotFound": {"code": 404, "message": "Flavor x could not be found."}})
        );
        let cinder = render(Some(ServiceKind::Volume), &Fault::conflict("busy"));
        assert_eq!(body(&cinder)["conflictingRequest"]["code"], 409);
        let ks = render(Some(ServiceKind::Identity), &f);
        assert_eq!(body(&ks)["error"]["title"], "Not Found");
        let neutron = render(Some(ServiceKind::Network), &f);
        assert_eq!(body(&neutron)["NeutronError"]["type"], "HTTPNotFound");
        let glance = render(Some(ServiceKind::Image), &f);
        assert_eq!(
            glance.body,
            ReplyBody::Text("404 Not Found\n\nFlavor x could not be found.\n\n   ".into())
        );
        let nova406 = render(
            Some(ServiceKind::Compute),
            &Fault::new(StatusCode::NOT_ACCEPTABLE, "v"),
        );
        assert_eq!(body(&nova406)["computeFault"]["code"], 406);
    }

    #[test]
    fn unauthorized_is_keystones_shape_everywhere() {
        let r = render(Some(ServiceKind::Compute), &Fault::unauthorized("no"));
        assert_eq!(
            body(&r),
            json!({"error": {"code": 401, "title": "Unauthorized", "message": "no"}})
        );
    }

    #[test]
    fn domain_errors_map_to_statuses() {
        let f: Fault = FlavorError::NameExists("a".into()).into();
        assert_eq!(f.status, StatusCode::CONFLICT);
        let f: Fault = IdentityError::Forbidden("list_users").into();
        assert_eq!(f.status, StatusCode::FORBIDDEN);
        let f: Fault = IdentityError::InvalidCredentials.into();
        assert_eq!(f.status, StatusCode::UNAUTHORIZED);
    }
}
