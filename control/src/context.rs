//! Who a request acts as: the user, project and roles taken from its token (TCP listener) or
//! granted to the trusted peer of the unix socket, and the visibility rule built on them.

use crate::identity::tokens::TokenInfo;
use crate::identity::ROLE_ADMIN;

#[derive(Debug, Clone, PartialEq)]
pub struct RequestContext {
    pub user_id: String,
    pub user_name: String,
    /// None for an unscoped token, which may only manage itself.
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub roles: Vec<String>,
}

/// Which projects' resources a listing may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    All,
    Project(String),
}

impl RequestContext {
    pub fn from_token(info: &TokenInfo) -> Self {
        RequestContext {
            user_id: info.user.id.clone(),
            user_name: info.user.name.clone(),
            project_id: info.project.as_ref().map(|p| p.id.clone()),
            project_name: info.project.as_ref().map(|p| p.name.clone()),
            roles: info.roles.iter().map(|r| r.name.clone()).collect(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    /// The rule every list follows: a member sees its own project's resources; an admin sees
    /// its own project's too unless it asks for all (`all_projects`, Nova's `all_tenants`).
    /// None for an unscoped caller, who sees no project's resources.
    pub fn visibility(&self, all_projects: bool) -> Option<Visibility> {
        if self.is_admin() && all_projects {
            return Some(Visibility::All);
        }
        self.project_id.clone().map(Visibility::Project)
    }

    /// Whether a resource owned by `project_id` is visible to this caller.
    pub fn can_see(&self, project_id: &str) -> bool {
        self.is_admin() || self.project_id.as_deref() == Some(project_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(project: Option<&str>, roles: &[&str]) -> RequestContext {
        RequestContext {
            user_id: "u".into(),
            user_name: "user".into(),
            project_id: project.map(Into::into),
            project_name: project.map(Into::into),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn members_see_their_project_admins_see_all_when_asked() {
        let member = ctx(Some("p1"), &["member", "reader"]);
        assert_eq!(
            member.visibility(true),
            Some(Visibility::Project("p1".into()))
        );
        assert!(member.can_see("p1"));
        assert!(!member.can_see("p2"));
        let admin = ctx(Some("admin"), &["admin", "member", "reader"]);
        assert_eq!(admin.visibility(true), Some(Visibility::All));
        assert_eq!(
            admin.visibility(false),
            Some(Visibility::Project("admin".into()))
        );
        assert!(admin.can_see("p2"));
        assert_eq!(ctx(None, &[]).visibility(true), None);
    }
}
