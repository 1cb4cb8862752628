use super::*;
use crate::identity::testing::fixture;

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| name(i).to_owned()).collect()
}

#[test]
fn members_list_their_own_project_and_its_users_admins_list_all() {
    let f = fixture();
    let mine = list_projects(&f.db, &f.member, None).unwrap();
    assert_eq!(names(&mine, |p| &p.name), ["demo"]);
    let all = list_projects(&f.db, &f.admin, None).unwrap();
    assert_eq!(names(&all, |p| &p.name), ["admin", "demo"]);
    let by_name = list_projects(&f.db, &f.admin, Some("demo")).unwrap();
    assert_eq!(by_name.len(), 1);

    let users = list_users(&f.db, &f.member, None).unwrap();
    assert_eq!(names(&users, |u| &u.name), ["alice"]);
    let users = list_users(&f.db, &f.admin, None).unwrap();
    assert_eq!(names(&users, |u| &u.name), ["admin", "alice"]);
}

#[test]
fn members_cannot_see_other_projects_or_users() {
    let f = fixture();
    let admin_project = f.admin.project_id.clone().unwrap();
    assert!(matches!(
        get_project(&f.db, &f.member, &admin_project),
        Err(IdentityError::Forbidden("get_project"))
    ));
    assert_eq!(
        get_project(&f.db, &f.member, &f.member_project_id)
            .unwrap()
            .name,
        "demo"
    );
    assert!(matches!(
        get_user(&f.db, &f.member, &f.admin.user_id),
        Err(IdentityError::NotFound { .. })
    ));
    assert_eq!(
        get_user(&f.db, &f.admin, &f.member.user_id).unwrap().name,
        "alice"
    );
}

#[test]
fn only_admins_change_the_directory() {
    let f = fixture();
    let project = NewProject {
        name: "other".into(),
        description: String::new(),
        enabled: true,
    };
    assert!(matches!(
        create_project(&f.db, &f.member, project.clone()),
        Err(IdentityError::Forbidden("create_project"))
    ));
    assert!(matches!(
        list_roles(&f.db, &f.member, None),
        Err(IdentityError::Forbidden("list_roles"))
    ));
    create_project(&f.db, &f.admin, project.clone()).unwrap();
    assert!(matches!(
        create_project(&f.db, &f.admin, project),
        Err(IdentityError::Duplicate { .. })
    ));
}

#[test]
fn names_are_checked_and_grants_need_existing_parts() {
    let f = fixture();
    for bad in ["", " padded", &"x".repeat(65)] {
        let r = create_role(
            &f.db,
            &f.admin,
            NewRole {
                name: bad.to_owned(),
                description: String::new(),
            },
        );
        assert!(
            matches!(r, Err(IdentityError::InvalidField { .. })),
            "{bad:?}"
        );
    }
    let roles = list_roles(&f.db, &f.admin, None).unwrap();
    assert_eq!(names(&roles, |r| &r.name), ["admin", "member", "reader"]);
    let r = grant_role(
        &f.db,
        &f.admin,
        Assignment {
            project_id: &f.member_project_id,
            user_id: "nobody",
            role_id: &roles[0].id,
        },
    );
    assert!(matches!(
        r,
        Err(IdentityError::NotFound { kind: "user", .. })
    ));
    let r = revoke_role(
        &f.db,
        &f.admin,
        Assignment {
            project_id: &f.member_project_id,
            user_id: &f.member.user_id,
            role_id: &roles[0].id,
        },
    );
    assert!(matches!(r, Err(IdentityError::NotFound { .. })));
}
