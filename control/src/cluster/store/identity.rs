//! Identity's door in etcd: projects, users (with their argon2 hashes), roles, assignments and
//! issued tokens under `/identity/`, names under `/names/{project,user,role}/`. A create puts
//! the name key and the record in one transaction that compares `version == 0` on both; the
//! failure branch reads what the compares looked at, so the error names what was taken or
//! missing at that very revision.
//!
//! Tokens are today's random bearer tokens, kept by their SHA-256 so a token issued by one box
//! validates on every other. Each is on its own lease that ends 60 s after its expiry (box
//! clocks may differ; validation checks the expiry itself), so etcd forgets them unswept.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{
    contended, existing, from_json, jitter, name_record, ranges, to_json, EtcdDoors, Kv,
    NameRecord, MAX_TRIES,
};
use crate::cluster::keys::NameKind;
use crate::identity::store::{
    Grant, IdentityStore, ListFilter, Project, ProjectRole, Role, TokenRecord, User,
};
use crate::identity::IdentityError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const PROJECT_SCHEMA: u32 = 1;
const USER_SCHEMA: u32 = 1;
const ROLE_SCHEMA: u32 = 1;
const ASSIGNMENT_SCHEMA: u32 = 1;
const TOKEN_SCHEMA: u32 = 1;
/// How long a token's key outlives its expiry.
const TOKEN_GRACE: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct ProjectRecord {
    schema: u32,
    id: String,
    name: String,
    description: String,
    enabled: bool,
}

#[derive(Serialize, Deserialize)]
struct UserRecord {
    schema: u32,
    id: String,
    name: String,
    enabled: bool,
    default_project_id: Option<String>,
    email: Option<String>,
    description: String,
    password_hash: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RoleRecord {
    schema: u32,
    id: String,
    name: String,
    description: String,
}

/// `/identity/assignments/<project>/<user>/<role>`: the key is the assignment.
#[derive(Serialize, Deserialize)]
struct AssignmentRecord {
    schema: u32,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    schema: u32,
    user_id: String,
    project_id: Option<String>,
    methods: Vec<String>,
    audit_id: String,
    /// Microseconds since the epoch, as [`Timestamp`].
    issued_at: i64,
    expires_at: i64,
    revoked: bool,
}

impl From<ProjectRecord> for Project {
    fn from(r: ProjectRecord) -> Project {
        Project {
            id: r.id,
            name: r.name,
            description: r.description,
            enabled: r.enabled,
        }
    }
}

impl From<UserRecord> for User {
    fn from(r: UserRecord) -> User {
        User {
            id: r.id,
            name: r.name,
            enabled: r.enabled,
            default_project_id: r.default_project_id,
            email: r.email,
            description: r.description,
        }
    }
}

impl From<RoleRecord> for Role {
    fn from(r: RoleRecord) -> Role {
        Role {
            id: r.id,
            name: r.name,
            description: r.description,
        }
    }
}

impl StoredToken {
    fn into_record(self, id_hash: &str) -> TokenRecord {
        TokenRecord {
            id_hash: id_hash.to_owned(),
            user_id: self.user_id,
            project_id: self.project_id,
            methods: self.methods,
            audit_id: self.audit_id,
            issued_at: Timestamp(self.issued_at),
            expires_at: Timestamp(self.expires_at),
            revoked: self.revoked,
        }
    }
}

/// [`IdentityStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdIdentity {
    doors: EtcdDoors,
}

impl EtcdIdentity {
    pub(super) fn new(doors: EtcdDoors) -> EtcdIdentity {
        EtcdIdentity { doors }
    }
}

/// Two records created with one id: ids are generated, so this is a caller's bug.
fn id_taken(kind: &str, id: &str) -> IdentityError {
    IdentityError::Storage(StorageError::Backend(
        format!("a {kind} with id {id} already exists").into(),
    ))
}

fn absent(key: String) -> Compare {
    Compare::version(key, CompareOp::Equal, 0)
}

fn present(key: String) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

fn count(key: String) -> TxnOp {
    TxnOp::get(key, Some(GetOptions::new().with_count_only()))
}

impl Kv {
    /// The record a `/names/` key points at, if both exist.
    async fn by_name<R: serde::de::DeserializeOwned>(
        &self,
        kind: NameKind,
        name: &str,
        record_key: impl Fn(&str) -> String,
    ) -> Result<Option<R>, StorageError> {
        let Some(kv) = self.get(self.keys.name(kind, name)).await? else {
            return Ok(None);
        };
        let name: NameRecord = from_json(&kv)?;
        match self.get(record_key(&name.id)).await? {
            Some(kv) => Ok(Some(from_json(&kv)?)),
            None => Ok(None),
        }
    }

    async fn one<R: serde::de::DeserializeOwned>(
        &self,
        key: String,
    ) -> Result<Option<R>, StorageError> {
        self.get(key).await?.map(|kv| from_json(&kv)).transpose()
    }

    async fn all<R: serde::de::DeserializeOwned>(
        &self,
        prefix: String,
    ) -> Result<Vec<R>, StorageError> {
        self.range(prefix, false)
            .await?
            .iter()
            .map(from_json)
            .collect()
    }

    /// Creates a project or a role: the record and its name key, both new.
    async fn create_named(
        &self,
        kind: NameKind,
        label: &'static str,
        (id, name): (&str, &str),
        key: String,
        value: Vec<u8>,
    ) -> Result<(), IdentityError> {
        let name_key = self.keys.name(kind, name);
        let txn = Txn::new()
            .when([absent(name_key.clone()), absent(key.clone())])
            .and_then([
                TxnOp::put(name_key.clone(), name_record(id), None),
                TxnOp::put(key, value, None),
            ])
            .or_else([count(name_key)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            Ok(())
        } else if existing(&resp).first() == Some(&true) {
            Err(IdentityError::duplicate(label, name))
        } else {
            Err(id_taken(label, id))
        }
    }

    async fn create_user(
        self,
        u: User,
        password_hash: Option<String>,
        grant: Option<(String, String)>,
    ) -> Result<User, IdentityError> {
        let k = &self.keys;
        let (name_key, key) = (k.name(NameKind::User, &u.name), k.user(&u.id));
        let mut when = vec![absent(name_key.clone()), absent(key.clone())];
        // The failure branch reads, in this order: the name, the default project, the
        // granted project and role (SQLite's order of checks).
        let mut why = vec![count(name_key.clone())];
        if let Some(pid) = &u.default_project_id {
            when.push(present(k.project(pid)));
            why.push(count(k.project(pid)));
        }
        let record = UserRecord {
            schema: USER_SCHEMA,
            id: u.id.clone(),
            name: u.name.clone(),
            enabled: u.enabled,
            default_project_id: u.default_project_id.clone(),
            email: u.email.clone(),
            description: u.description.clone(),
            password_hash,
        };
        let mut then = vec![
            TxnOp::put(name_key, name_record(&u.id), None),
            TxnOp::put(key, to_json(&record), None),
        ];
        if let Some((pid, rid)) = &grant {
            when.extend([present(k.project(pid)), present(k.role(rid))]);
            why.extend([count(k.project(pid)), count(k.role(rid))]);
            let assignment = AssignmentRecord {
                schema: ASSIGNMENT_SCHEMA,
            };
            then.push(TxnOp::put(
                k.assignment(pid, &u.id, rid),
                to_json(&assignment),
                None,
            ));
        }
        let resp = self
            .txn(Txn::new().when(when).and_then(then).or_else(why))
            .await?;
        if resp.succeeded() {
            return Ok(u);
        }
        let mut found = existing(&resp).into_iter();
        if found.next() == Some(true) {
            return Err(IdentityError::duplicate("User", &u.name));
        }
        if let Some(pid) = &u.default_project_id {
            if found.next() == Some(false) {
                return Err(IdentityError::missing("project", pid));
            }
        }
        if let Some((pid, rid)) = &grant {
            if found.next() == Some(false) {
                return Err(IdentityError::missing("project", pid));
            }
            if found.next() == Some(false) {
                return Err(IdentityError::missing("role", rid));
            }
        }
        Err(id_taken("user", &u.id))
    }

    /// Grants (`revoke` false) or takes back a role, checking that its three parts exist.
    async fn change_grant(
        self,
        (project, user, role): (String, String, String),
        revoke: bool,
    ) -> Result<(), IdentityError> {
        let k = &self.keys;
        let key = k.assignment(&project, &user, &role);
        let mut when = vec![
            present(k.project(&project)),
            present(k.user(&user)),
            present(k.role(&role)),
        ];
        let mut why = vec![
            count(k.project(&project)),
            count(k.user(&user)),
            count(k.role(&role)),
        ];
        let then = if revoke {
            when.push(present(key.clone()));
            why.push(count(key.clone()));
            TxnOp::delete(key, None)
        } else {
            let assignment = AssignmentRecord {
                schema: ASSIGNMENT_SCHEMA,
            };
            TxnOp::put(key, to_json(&assignment), None)
        };
        let resp = self
            .txn(Txn::new().when(when).and_then([then]).or_else(why))
            .await?;
        if resp.succeeded() {
            return Ok(());
        }
        let found = existing(&resp);
        let parts = [("project", &project), ("user", &user), ("role", &role)];
        for ((kind, id), exists) in parts.into_iter().zip(&found) {
            if !exists {
                return Err(IdentityError::missing(kind, id));
            }
        }
        Err(IdentityError::missing(
            "role assignment",
            &format!("{project}/{user}/{role}"),
        ))
    }

    async fn users(
        self,
        name: Option<String>,
        project: Option<String>,
    ) -> Result<Vec<User>, StorageError> {
        let k = &self.keys;
        let mut reads = vec![TxnOp::get(k.users(), Some(GetOptions::new().with_prefix()))];
        if let Some(p) = &project {
            let keys_only = GetOptions::new().with_prefix().with_keys_only();
            reads.push(TxnOp::get(k.assignments_on(p), Some(keys_only)));
        }
        // One revision for both: the users and who holds a role on the project.
        let resp = self.txn(Txn::new().and_then(reads)).await?;
        let mut got = ranges(&resp).into_iter();
        let users = got.next().unwrap_or_default();
        let holders: Option<BTreeSet<String>> = project.as_ref().map(|p| {
            let prefix = k.assignments_on(p);
            got.next()
                .unwrap_or_default()
                .iter()
                .filter_map(|kv| {
                    let rest = kv.key_str().ok()?.strip_prefix(&prefix)?;
                    Some(rest.split('/').next()?.to_owned())
                })
                .collect()
        });
        let mut out = Vec::new();
        for kv in &users {
            let u: UserRecord = from_json(kv)?;
            let named = name.as_ref().is_none_or(|n| *n == u.name);
            let holds = holders.as_ref().is_none_or(|h| h.contains(&u.id));
            if named && holds {
                out.push(User::from(u));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn assigned_roles(
        self,
        user: String,
        project: String,
    ) -> Result<Vec<Role>, StorageError> {
        let prefix = self.keys.assignments_of(&project, &user);
        let held = self.range(prefix.clone(), true).await?;
        let role_keys = held
            .iter()
            .filter_map(|kv| Some(self.keys.role(kv.key_str().ok()?.strip_prefix(&prefix)?)))
            .collect();
        let mut roles = Vec::new();
        for kv in self.get_many(role_keys).await?.into_iter().flatten() {
            roles.push(Role::from(from_json::<RoleRecord>(&kv)?));
        }
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(roles)
    }

    async fn insert_token(self, t: TokenRecord) -> Result<(), StorageError> {
        // Tokens that expired before this one's issue can never validate again (most are
        // already gone with their lease).
        let mut stale = Vec::new();
        for kv in self.range(self.keys.tokens(), false).await? {
            let old: StoredToken = from_json(&kv)?;
            if old.expires_at < t.issued_at.micros() {
                stale.push(String::from_utf8_lossy(kv.key()).into_owned());
            }
        }
        self.delete_all(stale).await?;
        let left = t
            .expires_at
            .micros()
            .saturating_sub(Timestamp::now().micros());
        let ttl = Duration::from_micros(u64::try_from(left).unwrap_or(0)) + TOKEN_GRACE;
        let ttl = i64::try_from(ttl.as_secs() + 1).unwrap_or(i64::MAX);
        let lease = self
            .etcd
            .run(|mut c| async move { c.lease_grant(ttl, None).await })
            .await
            .map_err(super::backend)?
            .id();
        let record = StoredToken {
            schema: TOKEN_SCHEMA,
            user_id: t.user_id.clone(),
            project_id: t.project_id.clone(),
            methods: t.methods.clone(),
            audit_id: t.audit_id.clone(),
            issued_at: t.issued_at.micros(),
            expires_at: t.expires_at.micros(),
            revoked: t.revoked,
        };
        let mut when = vec![present(self.keys.user(&t.user_id))];
        if let Some(p) = &t.project_id {
            when.push(present(self.keys.project(p)));
        }
        let put = TxnOp::put(
            self.keys.token(&t.id_hash),
            to_json(&record),
            Some(PutOptions::new().with_lease(lease)),
        );
        if !self
            .txn(Txn::new().when(when).and_then([put]))
            .await?
            .succeeded()
        {
            return Err(StorageError::Backend(
                format!(
                    "token of user {} for a user or project that does not exist",
                    t.user_id
                )
                .into(),
            ));
        }
        Ok(())
    }

    async fn revoke_token(self, id_hash: String) -> Result<bool, StorageError> {
        let key = self.keys.token(&id_hash);
        for _ in 0..MAX_TRIES {
            let Some(kv) = self.get(key.clone()).await? else {
                return Ok(false);
            };
            let mut t: StoredToken = from_json(&kv)?;
            t.revoked = true;
            let options = (kv.lease() != 0).then(|| PutOptions::new().with_lease(kv.lease()));
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), to_json(&t), options)]);
            if self.txn(txn).await?.succeeded() {
                return Ok(true);
            }
            jitter().await;
        }
        Err(contended(&key))
    }
}

impl IdentityStore for EtcdIdentity {
    fn create_project(&self, p: &Project) -> Result<Project, IdentityError> {
        let p = p.clone();
        self.doors.call(|kv| async move {
            let record = ProjectRecord {
                schema: PROJECT_SCHEMA,
                id: p.id.clone(),
                name: p.name.clone(),
                description: p.description.clone(),
                enabled: p.enabled,
            };
            let key = kv.keys.project(&p.id);
            kv.create_named(
                NameKind::Project,
                "Project",
                (&p.id, &p.name),
                key,
                to_json(&record),
            )
            .await?;
            Ok(p)
        })
    }

    fn project(&self, id: &str) -> Result<Option<Project>, StorageError> {
        let id = id.to_owned();
        self.doors.call(|kv| async move {
            let r: Option<ProjectRecord> = kv.one(kv.keys.project(&id)).await?;
            Ok(r.map(Project::from))
        })
    }

    fn project_by_name(&self, name: &str) -> Result<Option<Project>, StorageError> {
        let name = name.to_owned();
        self.doors.call(|kv| async move {
            let keys = kv.keys.clone();
            let r: Option<ProjectRecord> = kv
                .by_name(NameKind::Project, &name, |id| keys.project(id))
                .await?;
            Ok(r.map(Project::from))
        })
    }

    fn projects(&self, f: ListFilter<'_>) -> Result<Vec<Project>, StorageError> {
        let (name, id) = (f.name.map(str::to_owned), f.project.map(str::to_owned));
        self.doors.call(|kv| async move {
            let all: Vec<ProjectRecord> = match &id {
                Some(id) => kv.one(kv.keys.project(id)).await?.into_iter().collect(),
                None => kv.all(kv.keys.projects()).await?,
            };
            let mut out: Vec<Project> = all
                .into_iter()
                .filter(|p| name.as_ref().is_none_or(|n| *n == p.name))
                .map(Project::from)
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn create_user(
        &self,
        u: &User,
        password_hash: Option<&str>,
        grant: Option<ProjectRole<'_>>,
    ) -> Result<User, IdentityError> {
        let (u, hash) = (u.clone(), password_hash.map(str::to_owned));
        let grant = grant.map(|g| (g.project_id.to_owned(), g.role_id.to_owned()));
        self.doors.call(|kv| kv.create_user(u, hash, grant))
    }

    fn user(&self, id: &str) -> Result<Option<User>, StorageError> {
        let id = id.to_owned();
        self.doors.call(|kv| async move {
            let r: Option<UserRecord> = kv.one(kv.keys.user(&id)).await?;
            Ok(r.map(User::from))
        })
    }

    fn user_by_name(&self, name: &str) -> Result<Option<User>, StorageError> {
        let name = name.to_owned();
        self.doors.call(|kv| async move {
            let keys = kv.keys.clone();
            let r: Option<UserRecord> = kv
                .by_name(NameKind::User, &name, |id| keys.user(id))
                .await?;
            Ok(r.map(User::from))
        })
    }

    fn users(&self, f: ListFilter<'_>) -> Result<Vec<User>, StorageError> {
        let (name, project) = (f.name.map(str::to_owned), f.project.map(str::to_owned));
        self.doors.call(|kv| kv.users(name, project))
    }

    fn password_hash(&self, user_id: &str) -> Result<Option<String>, StorageError> {
        let id = user_id.to_owned();
        self.doors.call(|kv| async move {
            let r: Option<UserRecord> = kv.one(kv.keys.user(&id)).await?;
            Ok(r.and_then(|u| u.password_hash))
        })
    }

    fn create_role(&self, r: &Role) -> Result<Role, IdentityError> {
        let r = r.clone();
        self.doors.call(|kv| async move {
            let record = RoleRecord {
                schema: ROLE_SCHEMA,
                id: r.id.clone(),
                name: r.name.clone(),
                description: r.description.clone(),
            };
            let key = kv.keys.role(&r.id);
            kv.create_named(
                NameKind::Role,
                "Role",
                (&r.id, &r.name),
                key,
                to_json(&record),
            )
            .await?;
            Ok(r)
        })
    }

    fn role(&self, id: &str) -> Result<Option<Role>, StorageError> {
        let id = id.to_owned();
        self.doors.call(|kv| async move {
            let r: Option<RoleRecord> = kv.one(kv.keys.role(&id)).await?;
            Ok(r.map(Role::from))
        })
    }

    fn role_by_name(&self, name: &str) -> Result<Option<Role>, StorageError> {
        let name = name.to_owned();
        self.doors.call(|kv| async move {
            let keys = kv.keys.clone();
            let r: Option<RoleRecord> = kv
                .by_name(NameKind::Role, &name, |id| keys.role(id))
                .await?;
            Ok(r.map(Role::from))
        })
    }

    fn roles(&self, name: Option<&str>) -> Result<Vec<Role>, StorageError> {
        let name = name.map(str::to_owned);
        self.doors.call(|kv| async move {
            let all: Vec<RoleRecord> = kv.all(kv.keys.roles()).await?;
            let mut out: Vec<Role> = all
                .into_iter()
                .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
                .map(Role::from)
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn grant_role(&self, g: Grant<'_>) -> Result<(), IdentityError> {
        let parts = (g.project_id.into(), g.user_id.into(), g.role_id.into());
        self.doors.call(|kv| kv.change_grant(parts, false))
    }

    fn revoke_role(&self, g: Grant<'_>) -> Result<(), IdentityError> {
        let parts = (g.project_id.into(), g.user_id.into(), g.role_id.into());
        self.doors.call(|kv| kv.change_grant(parts, true))
    }

    fn assigned_roles(&self, user_id: &str, project_id: &str) -> Result<Vec<Role>, StorageError> {
        let (user, project) = (user_id.to_owned(), project_id.to_owned());
        self.doors.call(|kv| kv.assigned_roles(user, project))
    }

    fn insert_token(&self, t: &TokenRecord) -> Result<(), StorageError> {
        let t = t.clone();
        self.doors.call(|kv| kv.insert_token(t))
    }

    fn token(&self, id_hash: &str) -> Result<Option<TokenRecord>, StorageError> {
        let id_hash = id_hash.to_owned();
        self.doors.call(|kv| async move {
            let t: Option<StoredToken> = kv.one(kv.keys.token(&id_hash)).await?;
            Ok(t.map(|t| t.into_record(&id_hash)))
        })
    }

    fn revoke_token(&self, id_hash: &str) -> Result<bool, StorageError> {
        let id_hash = id_hash.to_owned();
        self.doors.call(|kv| kv.revoke_token(id_hash))
    }
}
