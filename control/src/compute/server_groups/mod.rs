//! Nova's server groups (`os-server-groups`): who may make, see and delete them, and the
//! group a create's `group` hint joins. Kept through [`ServerGroupStore`]; where the members
//! run is placement's to know (`servers::placement` reads the members at each decision).

pub mod store;

pub use store::{ServerGroup, ServerGroupStore};

use super::servers::ServerError;
use crate::context::{RequestContext, Visibility};
use crate::quota::{QuotaError, Quotas};
use crate::random::{self, RandomError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_resources::GroupPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ServerGroupError {
    #[error("Instance group {0} could not be found.")]
    NotFound(String),
    #[error("Invalid input for field/attribute {field}. {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("Only anti-affinity policy supports rules.")]
    RulesNeedAntiAffinity,
    #[error("Policy doesn't allow os_compute_api:os-server-groups:{0} to be performed.")]
    Forbidden(&'static str),
    /// Nova's words for its `server_groups` quota (a 403).
    #[error("Quota exceeded, too many server groups.")]
    QuotaExceeded,
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewServerGroup {
    pub name: String,
    pub policy: GroupPolicy,
    pub max_server_per_host: Option<u32>,
}

/// Records a group of the caller's project, with no member, within its `server_groups` quota.
pub fn create(
    store: &dyn ServerGroupStore,
    quotas: &Quotas,
    ctx: &RequestContext,
    new: NewServerGroup,
) -> Result<ServerGroup, ServerGroupError> {
    super::servers::check_name("name", &new.name).map_err(|e| match e {
        ServerError::InvalidField { field, reason } => {
            ServerGroupError::InvalidField { field, reason }
        }
        other => ServerGroupError::InvalidField {
            field: "name",
            reason: other.to_string(),
        },
    })?;
    if new.max_server_per_host.is_some() && new.policy != GroupPolicy::AntiAffinity {
        return Err(ServerGroupError::RulesNeedAntiAffinity);
    }
    let project_id = ctx
        .project_id
        .clone()
        .ok_or(ServerGroupError::Forbidden("create"))?;
    let group = ServerGroup {
        seq: 0,
        id: random::uuid()?,
        name: new.name,
        project_id,
        user_id: ctx.user_id.clone(),
        policy: new.policy,
        max_server_per_host: new.max_server_per_host,
        members: Vec::new(),
        created_at: Timestamp::now(),
    };
    let limit = quotas.limit(&group.project_id, "server_groups")?;
    store.create_group(&group, limit).map_err(|e| match e {
        QuotaError::Storage(e) => ServerGroupError::Storage(e),
        _ => ServerGroupError::QuotaExceeded,
    })
}

/// The group if the caller may see it (its project's members, and admins).
pub fn get(
    store: &dyn ServerGroupStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<ServerGroup, ServerGroupError> {
    store
        .group(id)?
        .filter(|g| ctx.can_see(&g.project_id))
        .ok_or_else(|| ServerGroupError::NotFound(id.to_owned()))
}

/// The caller's project's groups, or every project's for an admin asking `all_projects`.
pub fn list(
    store: &dyn ServerGroupStore,
    ctx: &RequestContext,
    all_projects: bool,
) -> Result<Vec<ServerGroup>, ServerGroupError> {
    if all_projects && !ctx.is_admin() {
        return Err(ServerGroupError::Forbidden("index:all_projects"));
    }
    Ok(match ctx.visibility(all_projects) {
        None => Vec::new(),
        Some(Visibility::All) => store.groups(None)?,
        Some(Visibility::Project(p)) => store.groups(Some(&p))?,
    })
}

/// Deletes a group the caller may see; its members stay, in no group.
pub fn delete(
    store: &dyn ServerGroupStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), ServerGroupError> {
    get(store, ctx, id)?;
    if !store.delete_group(id)? {
        return Err(ServerGroupError::NotFound(id.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    /// OpenStack's default quotas, with the limits set per project in `db`.
    fn quotas(db: &Db) -> Quotas {
        Quotas::new(Default::default(), std::sync::Arc::new(db.clone()))
    }

    fn caller(project: &str, roles: &[&str]) -> RequestContext {
        RequestContext {
            user_id: "u".into(),
            user_name: "u".into(),
            project_id: Some(project.into()),
            project_name: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn new(name: &str, policy: GroupPolicy, max: Option<u32>) -> NewServerGroup {
        NewServerGroup {
            name: name.into(),
            policy,
            max_server_per_host: max,
        }
    }

    #[test]
    fn groups_are_seen_by_their_project_and_admins_only() {
        let db = Db::open_in_memory().unwrap();
        let alice = caller("p1", &["member"]);
        let bob = caller("p2", &["member"]);
        let admin = caller("p3", &["admin"]);
        let g = create(
            &db,
            &quotas(&db),
            &alice,
            new("web", GroupPolicy::AntiAffinity, Some(2)),
        )
        .unwrap();
        assert_eq!(
            (g.project_id.as_str(), g.max_server_per_host),
            ("p1", Some(2))
        );
        create(
            &db,
            &quotas(&db),
            &bob,
            new("db", GroupPolicy::Affinity, None),
        )
        .unwrap();
        assert_eq!(get(&db, &alice, &g.id).unwrap(), g);
        assert!(matches!(
            get(&db, &bob, &g.id),
            Err(ServerGroupError::NotFound(_))
        ));
        assert!(get(&db, &admin, &g.id).is_ok());
        assert_eq!(list(&db, &alice, false).unwrap(), std::slice::from_ref(&g));
        assert!(
            list(&db, &admin, false).unwrap().is_empty(),
            "own project only"
        );
        assert_eq!(list(&db, &admin, true).unwrap().len(), 2);
        assert_eq!(
            list(&db, &alice, true).unwrap_err().to_string(),
            "Policy doesn't allow os_compute_api:os-server-groups:index:all_projects to be \
             performed."
        );
        assert!(delete(&db, &bob, &g.id).is_err());
        delete(&db, &alice, &g.id).unwrap();
        assert_eq!(
            delete(&db, &alice, &g.id).unwrap_err().to_string(),
            format!("Instance group {} could not be found.", g.id)
        );
    }

    #[test]
    fn bad_requests_are_refused_in_nova_s_words() {
        let db = Db::open_in_memory().unwrap();
        let alice = caller("p1", &["member"]);
        assert_eq!(
            create(
                &db,
                &quotas(&db),
                &alice,
                new("g", GroupPolicy::Affinity, Some(2))
            )
            .unwrap_err()
            .to_string(),
            "Only anti-affinity policy supports rules."
        );
        for bad in ["", " lead", "trail "] {
            assert!(matches!(
                create(
                    &db,
                    &quotas(&db),
                    &alice,
                    new(bad, GroupPolicy::Affinity, None)
                ),
                Err(ServerGroupError::InvalidField { field: "name", .. })
            ));
        }
        assert!(db.groups(None).unwrap().is_empty());
    }
}
