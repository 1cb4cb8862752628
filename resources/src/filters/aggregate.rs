//! AggregateInstanceExtraSpecsFilter: a flavor's `aggregate_instance_extra_specs:KEY=REQ`
//! must be satisfied by the metadata of an aggregate the host is in.

use super::extra_specs_ops::requirement_matches;
use super::{HostFilter, Rejection};
use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

/// Rejects hosts whose aggregates do not carry matching metadata for every aggregate
/// extra spec of the request. Requests without such specs pass everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct AggregateInstanceExtraSpecsFilter;

impl HostFilter for AggregateInstanceExtraSpecsFilter {
    fn name(&self) -> &'static str {
        "AggregateInstanceExtraSpecsFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        for (key, requirement) in &request.aggregate_extra_specs {
            let values = host.aggregate_metadata.get(key);
            let Some(values) = values.filter(|values| !values.is_empty()) else {
                return Err(Rejection::new(format!(
                    "no aggregate of the host sets {key} (flavor wants {key}={requirement})"
                )));
            };
            if !values
                .iter()
                .any(|value| requirement_matches(value, requirement))
            {
                let found: Vec<&str> = values.iter().map(String::as_str).collect();
                return Err(Rejection::new(format!(
                    "aggregate metadata {key}={} does not satisfy {requirement:?}",
                    found.join(",")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &Host, specs: &[(&str, &str)]) -> Result<(), Rejection> {
        let mut request = ResourceRequest::default();
        for (key, value) in specs {
            request
                .aggregate_extra_specs
                .insert((*key).into(), (*value).into());
        }
        let ctx = SchedulingContext::new(&"s".into(), &request);
        AggregateInstanceExtraSpecsFilter.passes(host, &request, &ctx)
    }

    #[test]
    fn matching_metadata_passes() {
        let host = Host::new("a", "a")
            .with_aggregate("fast", &[("ssd", "true"), ("tier", "gold")])
            .with_aggregate("eu", &[("tier", "silver")]);
        assert_eq!(check(&host, &[]), Ok(()));
        assert_eq!(check(&host, &[("ssd", "true")]), Ok(()));
        // One of the host's aggregates satisfying the requirement is enough.
        assert_eq!(check(&host, &[("tier", "silver")]), Ok(()));
        assert_eq!(check(&host, &[("tier", "<or> bronze <or> gold")]), Ok(()));
    }

    #[test]
    fn missing_or_different_metadata_is_rejected() {
        let host = Host::new("a", "a").with_aggregate("slow", &[("ssd", "false")]);
        let reason = check(&host, &[("ssd", "true")]).unwrap_err().reason;
        assert_eq!(
            reason,
            "aggregate metadata ssd=false does not satisfy \"true\""
        );
        let reason = check(&host, &[("gpu", "true")]).unwrap_err().reason;
        assert!(
            reason.starts_with("no aggregate of the host sets gpu"),
            "{reason}"
        );
    }
}
