//! A database with the bootstrap admin and one member user in its own project, for the unit
//! tests of the identity modules and of the layers above them.

use super::bootstrap;
use super::directory::{self, Assignment, NewProject, NewUser};
use super::store::IdentityStore;
use crate::context::RequestContext;
use crate::storage::Db;

pub const ADMIN_PASSWORD: &str = "admin-secret";
pub const MEMBER_PASSWORD: &str = "member-secret";

pub struct Fixture {
    pub db: Db,
    pub admin: RequestContext,
    pub member: RequestContext,
    pub member_project_id: String,
}

pub fn fixture() -> Fixture {
    let db = Db::open_in_memory().unwrap();
    let unused = std::path::Path::new("/nonexistent/admin-password");
    let admin = bootstrap::ensure(&db, Some(ADMIN_PASSWORD), unused).unwrap();
    let project = directory::create_project(
        &db,
        &admin,
        NewProject {
            name: "demo".into(),
            description: String::new(),
            enabled: true,
        },
    )
    .unwrap();
    let user = directory::create_user(
        &db,
        &admin,
        NewUser {
            name: "alice".into(),
            password: Some(MEMBER_PASSWORD.into()),
            enabled: true,
            default_project_id: Some(project.id.clone()),
            email: None,
            description: String::new(),
        },
    )
    .unwrap();
    let role = db.role_by_name("member").unwrap().unwrap();
    directory::grant_role(
        &db,
        &admin,
        Assignment {
            project_id: &project.id,
            user_id: &user.id,
            role_id: &role.id,
        },
    )
    .unwrap();
    let member = RequestContext {
        user_id: user.id,
        user_name: user.name,
        project_id: Some(project.id.clone()),
        project_name: Some(project.name),
        roles: vec!["member".into(), "reader".into()],
    };
    Fixture {
        db,
        admin,
        member,
        member_project_id: project.id,
    }
}
