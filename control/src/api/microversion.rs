//! API microversions (the OpenStack `OpenStack-API-Version` scheme). A request names the
//! version it speaks, `OpenStack-API-Version: compute 2.61` (or Nova's older
//! `X-OpenStack-Nova-API-Version: 2.61`); no header means the minimum, `latest` the maximum,
//! anything outside [min, max] is 406. The version served is echoed in both headers with
//! `Vary`, so caches keep versions apart.
//!
//! Compute advertises 2.75 and honours every flavor behaviour up to it: `description` and
//! `PUT /flavors/{id}` (2.55), `extra_specs` in flavor bodies (2.61), `swap` as 0 instead of ""
//! (2.75). 2.86 (extra spec validation) is not served. Servers honour the server-side
//! changes up to 2.75 that clients rely on: extended attributes (2.3), `locked` (2.9),
//! `host_status` (2.16), `description` (2.19), `tags` (2.26, always empty), `networks`
//! required with "auto"/"none" (2.37), a 400 for an unknown status (2.38), the embedded
//! flavor (2.47), no `personality` (2.57), `trusted_image_certificates` (2.63),
//! `server_groups` (2.71), `locked_reason` (2.73), `host` on create (2.74), and a 400 for
//! unknown list parameters with PUT answering the full server (2.75).
//!
//! Volume advertises 3.0 only. The volumes, snapshots and types served behave as Cinder 3.0;
//! every later microversion changes something served here (3.2 the `bootable` filter, 3.34
//! `name~` filters, 3.41 `user_id` on snapshots, 3.42 extending attached volumes, 3.48 new
//! volume fields, ...) or implies an API that is not served (3.27 attachments), so none is
//! claimed. Raise `max` only with the behaviour of every version up to it.

use super::Fault;
use hyper::{HeaderMap, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// `X.Y` with no leading zeros (`2.01` is not a version), as Nova's parser requires.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.split_once('.')?;
        let number = |p: &str| -> Option<u32> {
            let ok = !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            ok.then(|| p.parse().ok()).flatten()
        };
        let major = number(major)?;
        (major > 0).then_some(())?;
        Some(ApiVersion::new(major, number(minor)?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One service's microversion range and headers.
#[derive(Debug)]
pub struct Microversions {
    /// The service type named in `OpenStack-API-Version`.
    pub service_type: &'static str,
    /// The service's own pre-standard header, if it has one.
    pub legacy_header: Option<&'static str>,
    pub min: ApiVersion,
    pub max: ApiVersion,
}

pub const COMPUTE: Microversions = Microversions {
    service_type: "compute",
    legacy_header: Some("X-OpenStack-Nova-API-Version"),
    min: ApiVersion::new(2, 1),
    max: ApiVersion::new(2, 75),
};

pub const VOLUME: Microversions = Microversions {
    service_type: "volume",
    legacy_header: None,
    min: ApiVersion::new(3, 0),
    max: ApiVersion::new(3, 0),
};

const STANDARD_HEADER: &str = "OpenStack-API-Version";

impl Microversions {
    /// The version a request asks for, checked against the range.
    pub fn negotiate(&self, headers: &HeaderMap) -> Result<ApiVersion, Fault> {
        let asked = self
            .asked_in_standard_header(headers)?
            .or_else(|| self.asked_in_legacy_header(headers));
        let Some(asked) = asked else {
            return Ok(self.min);
        };
        let asked = asked.trim();
        if asked.eq_ignore_ascii_case("latest") {
            return Ok(self.max);
        }
        let v = ApiVersion::parse(asked).ok_or_else(|| {
            Fault::bad_request(format!(
                "API Version String {asked} is of invalid format. Must be of format \
                 MajorNum.MinorNum."
            ))
        })?;
        if v < self.min || v > self.max {
            return Err(Fault::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "Version {v} is not supported by the API. Minimum is {} and maximum is {}.",
                    self.min, self.max
                ),
            ));
        }
        Ok(v)
    }

    /// The entry for this service in `OpenStack-API-Version` (the header may repeat and each
    /// may list several services, comma-separated).
    fn asked_in_standard_header(&self, headers: &HeaderMap) -> Result<Option<String>, Fault> {
        for value in headers.get_all(STANDARD_HEADER) {
            let value = value
                .to_str()
                .map_err(|_| Fault::bad_request("OpenStack-API-Version is not ASCII"))?;
            for entry in value.split(',') {
                let mut words = entry.split_whitespace();
                let (Some(service), Some(version)) = (words.next(), words.next()) else {
                    continue;
                };
                if service.eq_ignore_ascii_case(self.service_type) {
                    return Ok(Some(version.to_owned()));
                }
            }
        }
        Ok(None)
    }

    fn asked_in_legacy_header(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.legacy_header?;
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The headers every reply of this service carries for version `v`.
    pub fn reply_headers(&self, v: ApiVersion) -> Vec<(String, String)> {
        let mut h = vec![(
            STANDARD_HEADER.to_owned(),
            format!("{} {v}", self.service_type),
        )];
        let mut vary = STANDARD_HEADER.to_owned();
        if let Some(legacy) = self.legacy_header {
            h.push((legacy.to_owned(), v.to_string()));
            vary = format!("{vary}, {legacy}");
        }
        h.push(("Vary".to_owned(), vary));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn parses_versions_strictly() {
        assert_eq!(ApiVersion::parse("2.61"), Some(ApiVersion::new(2, 61)));
        assert_eq!(ApiVersion::parse("3.0"), Some(ApiVersion::new(3, 0)));
        for bad in [
            "2", "2.", ".1", "2.01", "02.1", "0.1", "2.x", "2.1.1", "-2.1", " 2.1",
        ] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
        assert!(ApiVersion::new(2, 9) < ApiVersion::new(2, 10));
    }

    #[test]
    fn negotiation() {
        let c = &COMPUTE;
        assert_eq!(c.negotiate(&headers(&[])).unwrap(), c.min);
        let std = headers(&[("openstack-api-version", "volume 3.0, compute 2.60")]);
        assert_eq!(c.negotiate(&std).unwrap(), ApiVersion::new(2, 60));
        assert_eq!(VOLUME.negotiate(&std).unwrap(), ApiVersion::new(3, 0));
        let legacy = headers(&[("x-openstack-nova-api-version", "2.55")]);
        assert_eq!(c.negotiate(&legacy).unwrap(), ApiVersion::new(2, 55));
        // The standard header wins over the legacy one.
        let both = headers(&[
            ("x-openstack-nova-api-version", "2.55"),
            ("openstack-api-version", "compute 2.3"),
        ]);
        assert_eq!(c.negotiate(&both).unwrap(), ApiVersion::new(2, 3));
        let latest = headers(&[("openstack-api-version", "compute latest")]);
        assert_eq!(c.negotiate(&latest).unwrap(), c.max);
        // Only another service named: this one gets its minimum.
        let other = headers(&[("openstack-api-version", "volume 3.1")]);
        assert_eq!(c.negotiate(&other).unwrap(), c.min);
    }

    #[test]
    fn out_of_range_is_406_and_garbage_is_400() {
        for v in ["2.0", "2.76", "3.1", "1.1"] {
            let h = headers(&[("openstack-api-version", &format!("compute {v}"))]);
            let err = COMPUTE.negotiate(&h).unwrap_err();
            assert_eq!(err.status, StatusCode::NOT_ACCEPTABLE, "{v}");
            assert!(err.message.contains("Minimum is 2.1 and maximum is 2.75"));
        }
        let h = headers(&[("x-openstack-nova-api-version", "two")]);
        assert_eq!(
            COMPUTE.negotiate(&h).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn reply_headers_echo_the_version() {
        let h = COMPUTE.reply_headers(ApiVersion::new(2, 61));
        assert!(h.contains(&("OpenStack-API-Version".into(), "compute 2.61".into())));
        assert!(h.contains(&("X-OpenStack-Nova-API-Version".into(), "2.61".into())));
        assert!(h.contains(&(
            "Vary".into(),
            "OpenStack-API-Version, X-OpenStack-Nova-API-Version".into()
        )));
        let v = VOLUME.reply_headers(ApiVersion::new(3, 0));
        assert_eq!(v.len(), 2);
    }
}
