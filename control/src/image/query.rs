//! Listing images: which ones a caller sees (Glance's visibility rules), the filters of
//! `GET /v2/images`, sorting and paging. Pure functions over loaded images, so the rules are
//! tested with plain values.

use super::ImageError;
use crate::context::RequestContext;
use crate::image::store::{Image, ImageStatus, ImageVisibility, MemberStatus};
use std::cmp::Ordering;

/// Glance's `limit_param_default` and `api_limit_max`.
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 1000;

/// The `visibility` filter: one visibility, or `all` of what the caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityFilter {
    Only(ImageVisibility),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Size,
    VirtualSize,
    Id,
    CreatedAt,
    UpdatedAt,
    Visibility,
    Owner,
    MinDisk,
    MinRam,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "name" => Self::Name,
            "status" => Self::Status,
            "container_format" => Self::ContainerFormat,
            "disk_format" => Self::DiskFormat,
            "size" => Self::Size,
            "virtual_size" => Self::VirtualSize,
            "id" => Self::Id,
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "visibility" => Self::Visibility,
            "owner" => Self::Owner,
            "min_disk" => Self::MinDisk,
            "min_ram" => Self::MinRam,
            _ => return None,
        })
    }

    fn compare(self, a: &Image, b: &Image) -> Ordering {
        match self {
            Self::Name => a.name.cmp(&b.name),
            Self::Status => a.status.as_str().cmp(b.status.as_str()),
            Self::ContainerFormat => a.container_format.cmp(&b.container_format),
            Self::DiskFormat => a.disk_format.cmp(&b.disk_format),
            Self::Size => a.size.cmp(&b.size),
            Self::VirtualSize => a.virtual_size.cmp(&b.virtual_size),
            Self::Id => a.id.cmp(&b.id),
            Self::CreatedAt => a.created_at.cmp(&b.created_at),
            Self::UpdatedAt => a.updated_at.cmp(&b.updated_at),
            Self::Visibility => a.visibility.as_str().cmp(b.visibility.as_str()),
            Self::Owner => a.owner.cmp(&b.owner),
            Self::MinDisk => a.min_disk.cmp(&b.min_disk),
            Self::MinRam => a.min_ram.cmp(&b.min_ram),
        }
    }
}

/// A listing request, parsed from the query string. `None` or empty means "no filter".
#[derive(Debug, Clone, PartialEq)]
pub struct ImageQuery {
    /// Any of these names (`name=in:a,b` gives several).
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub statuses: Vec<ImageStatus>,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    pub visibility: Option<VisibilityFilter>,
    pub owner: Option<String>,
    pub protected: Option<bool>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    pub size_min: Option<i64>,
    pub size_max: Option<i64>,
    /// The caller's member status on the shared images of other projects it lists (Glance's
    /// `member_status`, default `accepted`); None: any (`all`).
    pub member_status: Option<MemberStatus>,
    /// Additional properties that must have exactly these values.
    pub properties: Vec<(String, String)>,
    /// (key, descending); ties are broken by id in the direction of the last key.
    pub sort: Vec<(SortKey, bool)>,
    pub limit: usize,
    pub marker: Option<String>,
}

impl Default for ImageQuery {
    fn default() -> Self {
        ImageQuery {
            names: Vec::new(),
            ids: Vec::new(),
            statuses: Vec::new(),
            disk_formats: Vec::new(),
            container_formats: Vec::new(),
            visibility: None,
            owner: None,
            protected: None,
            checksum: None,
            os_hash_value: None,
            tags: Vec::new(),
            size_min: None,
            size_max: None,
            member_status: Some(MemberStatus::Accepted),
            properties: Vec::new(),
            sort: vec![(SortKey::CreatedAt, true)],
            limit: DEFAULT_LIMIT,
            marker: None,
        }
    }
}

fn own(ctx: &RequestContext, image: &Image) -> bool {
    image.owner.is_some() && image.owner == ctx.project_id
}

/// The caller's membership of `image`, if it is a shared image shared with the caller's project.
fn member_status(ctx: &RequestContext, image: &Image) -> Option<MemberStatus> {
    if image.visibility != ImageVisibility::Shared {
        return None;
    }
    let project = ctx.project_id.as_ref()?;
    image.members.get(project).map(|m| m.status)
}

/// Whether the caller may see image `image` at all (show, download, boot): an admin any, others
/// their project's, public and community images, and shared images their project is a member
/// of, whether it accepted them or not (as Glance).
pub fn can_see(ctx: &RequestContext, image: &Image) -> bool {
    ctx.is_admin()
        || own(ctx, image)
        || matches!(
            image.visibility,
            ImageVisibility::Public | ImageVisibility::Community
        )
        || member_status(ctx, image).is_some()
}

/// Whether the caller may change or delete it: its owner or an admin.
pub fn can_modify(ctx: &RequestContext, image: &Image) -> bool {
    ctx.is_admin() || own(ctx, image)
}

/// Whether a listing shows `image`. Without a visibility filter Glance lists public images, the
/// caller's own and those shared with it in `member_status` (accepted by default), not other
/// projects' community images (an admin gets everything).
fn listed(ctx: &RequestContext, image: &Image, q: &ImageQuery) -> bool {
    // A shared image of another project is listed only in the asked member status; anything
    // else as the caller may see it.
    let seen = match member_status(ctx, image) {
        Some(s) if !ctx.is_admin() => q.member_status.is_none_or(|wanted| wanted == s),
        _ => can_see(ctx, image),
    };
    match q.visibility {
        None => {
            ctx.is_admin()
                || own(ctx, image)
                || image.visibility == ImageVisibility::Public
                || seen && member_status(ctx, image).is_some()
        }
        Some(VisibilityFilter::All) => seen,
        Some(VisibilityFilter::Only(v)) => image.visibility == v && seen,
    }
}

fn matches(q: &ImageQuery, i: &Image) -> bool {
    let any_of = |wanted: &[String], have: &Option<String>| {
        wanted.is_empty() || have.as_ref().is_some_and(|h| wanted.contains(h))
    };
    any_of(&q.names, &i.name)
        && (q.ids.is_empty() || q.ids.contains(&i.id))
        && (q.statuses.is_empty() || q.statuses.contains(&i.status))
        && any_of(&q.disk_formats, &i.disk_format)
        && any_of(&q.container_formats, &i.container_format)
        && q.owner.as_ref().is_none_or(|o| i.owner.as_ref() == Some(o))
        && q.protected.is_none_or(|p| i.protected == p)
        && q.checksum
            .as_ref()
            .is_none_or(|c| i.checksum.as_ref() == Some(c))
        && q.os_hash_value
            .as_ref()
            .is_none_or(|h| i.os_hash_value.as_ref() == Some(h))
        && q.tags.iter().all(|t| i.tags.contains(t))
        && q.size_min.is_none_or(|m| i.size.is_some_and(|s| s >= m))
        && q.size_max.is_none_or(|m| i.size.is_some_and(|s| s <= m))
        && q.properties
            .iter()
            .all(|(k, v)| i.properties.get(k) == Some(v))
}

fn order(sort: &[(SortKey, bool)], a: &Image, b: &Image) -> Ordering {
    for &(key, desc) in sort {
        let o = key.compare(a, b);
        let o = if desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    let last_desc = sort.last().is_some_and(|&(_, d)| d);
    let o = a.id.cmp(&b.id);
    if last_desc {
        o.reverse()
    } else {
        o
    }
}

/// One page of `images` as `ctx` lists them with `q`.
pub fn page(
    ctx: &RequestContext,
    images: Vec<Image>,
    q: &ImageQuery,
) -> Result<Vec<Image>, ImageError> {
    let mut shown: Vec<Image> = images
        .into_iter()
        .filter(|i| listed(ctx, i, q) && matches(q, i))
        .collect();
    shown.sort_by(|a, b| order(&q.sort, a, b));
    let start = match &q.marker {
        None => 0,
        Some(m) => {
            shown
                .iter()
                .position(|i| &i.id == m)
                .ok_or_else(|| ImageError::MarkerNotFound(m.clone()))?
                + 1
        }
    };
    Ok(shown
        .into_iter()
        .skip(start)
        .take(q.limit.min(MAX_LIMIT))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;
    use std::collections::{BTreeMap, BTreeSet};

    fn ctx(project: &str, admin: bool) -> RequestContext {
        RequestContext {
            user_id: "u".into(),
            user_name: "u".into(),
            project_id: Some(project.into()),
            project_name: Some(project.into()),
            roles: if admin {
                vec!["admin".into()]
            } else {
                vec!["member".into()]
            },
        }
    }

    fn img(id: &str, owner: &str, vis: ImageVisibility, created: i64) -> Image {
        Image {
            id: id.into(),
            name: Some(format!("n-{id}")),
            status: ImageStatus::Active,
            visibility: vis,
            owner: Some(owner.into()),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            min_disk: 0,
            min_ram: 0,
            protected: false,
            size: Some(created * 10),
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            conversion: None,
            properties: BTreeMap::new(),
            tags: BTreeSet::new(),
            members: BTreeMap::new(),
            created_at: Timestamp(created),
            updated_at: Timestamp(created),
        }
    }

    fn all() -> Vec<Image> {
        use ImageVisibility::*;
        vec![
            img("a", "p1", Public, 1),
            img("b", "p1", Private, 2),
            img("c", "p2", Private, 3),
            img("d", "p2", Community, 4),
            img("e", "p2", Shared, 5),
            img("f", "p1", Community, 6),
        ]
    }

    fn ids(v: &[Image]) -> Vec<&str> {
        v.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn members_see_their_own_and_public_newest_first() {
        let got = page(&ctx("p1", false), all(), &ImageQuery::default()).unwrap();
        assert_eq!(ids(&got), ["f", "b", "a"]);
        let q = ImageQuery {
            visibility: Some(VisibilityFilter::Only(ImageVisibility::Community)),
            ..ImageQuery::default()
        };
        assert_eq!(
            ids(&page(&ctx("p1", false), all(), &q).unwrap()),
            ["f", "d"]
        );
        let q = ImageQuery {
            visibility: Some(VisibilityFilter::All),
            ..ImageQuery::default()
        };
        assert_eq!(
            ids(&page(&ctx("p1", false), all(), &q).unwrap()),
            ["f", "d", "b", "a"]
        );
        let q = ImageQuery {
            visibility: Some(VisibilityFilter::Only(ImageVisibility::Private)),
            ..ImageQuery::default()
        };
        assert_eq!(ids(&page(&ctx("p2", false), all(), &q).unwrap()), ["c"]);
        assert_eq!(
            page(&ctx("admin", true), all(), &ImageQuery::default())
                .unwrap()
                .len(),
            6
        );
    }

    #[test]
    fn filters_sort_and_pages() {
        let admin = ctx("admin", true);
        let mut images = all();
        images[0].tags = BTreeSet::from(["x".into(), "y".into()]);
        images[1].tags = BTreeSet::from(["x".into()]);
        images[2].status = ImageStatus::Queued;
        images[3]
            .properties
            .insert("os_distro".into(), "debian".into());
        let q = |f: fn(&mut ImageQuery)| {
            let mut q = ImageQuery {
                sort: vec![(SortKey::Id, false)],
                ..ImageQuery::default()
            };
            f(&mut q);
            ids(&page(&admin, images.clone(), &q).unwrap())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(q(|q| q.tags = vec!["x".into()]), ["a", "b"]);
        assert_eq!(q(|q| q.tags = vec!["x".into(), "y".into()]), ["a"]);
        assert_eq!(q(|q| q.statuses = vec![ImageStatus::Queued]), ["c"]);
        assert_eq!(
            q(|q| q.names = vec!["n-a".into(), "n-e".into()]),
            ["a", "e"]
        );
        assert_eq!(q(|q| q.size_min = Some(40)), ["d", "e", "f"]);
        assert_eq!(q(|q| q.size_max = Some(20)), ["a", "b"]);
        assert_eq!(
            q(|q| q.properties = vec![("os_distro".into(), "debian".into())]),
            ["d"]
        );
        assert_eq!(q(|q| q.owner = Some("p1".into())), ["a", "b", "f"]);
        assert_eq!(q(|q| q.limit = 2), ["a", "b"]);
        assert_eq!(
            q(|q| {
                q.limit = 2;
                q.marker = Some("b".into())
            }),
            ["c", "d"]
        );
        assert_eq!(
            q(|q| q.sort = vec![(SortKey::Name, true)]),
            ["f", "e", "d", "c", "b", "a"]
        );
        let bad = ImageQuery {
            marker: Some("zzz".into()),
            ..ImageQuery::default()
        };
        assert!(matches!(
            page(&admin, all(), &bad),
            Err(ImageError::MarkerNotFound(_))
        ));
    }

    #[test]
    fn who_may_change_what() {
        let i = img("d", "p2", ImageVisibility::Community, 1);
        assert!(can_see(&ctx("p1", false), &i));
        assert!(!can_modify(&ctx("p1", false), &i));
        assert!(can_modify(&ctx("p2", false), &i));
        assert!(can_modify(&ctx("x", true), &i));
        let s = img("e", "p2", ImageVisibility::Shared, 1);
        assert!(!can_see(&ctx("p1", false), &s));
    }
}
