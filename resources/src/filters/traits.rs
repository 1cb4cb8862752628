//! TraitsFilter: required traits present, forbidden traits absent (Placement's
//! `required=` query with `!` for forbidden).

use super::{HostFilter, Rejection};
use crate::host::Host;
use crate::request::{ResourceRequest, SchedulingContext};

/// Rejects hosts missing a required trait or having a forbidden one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraitsFilter;

impl HostFilter for TraitsFilter {
    fn name(&self) -> &'static str {
        "TraitsFilter"
    }

    fn passes(
        &self,
        host: &Host,
        request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        let missing: Vec<&str> = request
            .required_traits
            .difference(&host.traits)
            .map(String::as_str)
            .collect();
        let present: Vec<&str> = request
            .forbidden_traits
            .intersection(&host.traits)
            .map(String::as_str)
            .collect();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("lacks required trait(s) {}", missing.join(", ")));
        }
        if !present.is_empty() {
            problems.push(format!("has forbidden trait(s) {}", present.join(", ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Rejection::new(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &Host, request: &ResourceRequest) -> Result<(), Rejection> {
        TraitsFilter.passes(host, request, &SchedulingContext::new(&"s".into(), request))
    }

    #[test]
    fn required_and_forbidden_traits() {
        let host = Host::new("a", "a")
            .with_trait("HW_CPU_X86_AVX2")
            .with_trait("CUSTOM_SSD");
        let wants_avx = ResourceRequest::default().require_trait("HW_CPU_X86_AVX2");
        assert_eq!(check(&host, &wants_avx), Ok(()));
        let no_ssd = ResourceRequest::default().forbid_trait("CUSTOM_SSD");
        assert_eq!(
            check(&host, &no_ssd).unwrap_err().reason,
            "has forbidden trait(s) CUSTOM_SSD"
        );
        let both = ResourceRequest::default()
            .require_trait("CUSTOM_GPU")
            .require_trait("HW_CPU_X86_AVX2")
            .forbid_trait("CUSTOM_SSD")
            .forbid_trait("CUSTOM_SLOW");
        assert_eq!(
            check(&host, &both).unwrap_err().reason,
            "lacks required trait(s) CUSTOM_GPU; has forbidden trait(s) CUSTOM_SSD"
        );
    }
}
