//! Glance's image members: an owner shares a `shared` image with other projects, each of which
//! accepts or rejects it. A member sees the image (show, download, boot) whatever its status;
//! only accepted images are in its default listing. Members are part of the image's record,
//! so each change is one atomic update of the image.

use super::store::{Image, ImageMember, ImageRecordStore, ImageVisibility, MemberStatus};
use super::{check_modifiable, not_found, visible, ImageError};
use crate::context::RequestContext;
use crate::timestamp::Timestamp;

/// Glance's `image_member_quota` default: members of one image.
pub const MAX_MEMBERS: usize = 128;

/// One membership, with the image it is of (what the API shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub image_id: String,
    pub member_id: String,
    pub member: ImageMember,
}

fn membership(image: &Image, member_id: &str) -> Option<Membership> {
    image.members.get(member_id).map(|m| Membership {
        image_id: image.id.clone(),
        member_id: member_id.to_owned(),
        member: *m,
    })
}

fn only_shared(image: &Image) -> Result<(), ImageError> {
    if image.visibility != ImageVisibility::Shared {
        return Err(ImageError::Forbidden(format!(
            "Only shared images have members; image {} is {}.",
            image.id,
            image.visibility.as_str()
        )));
    }
    Ok(())
}

fn no_member(image_id: &str, member_id: &str) -> ImageError {
    ImageError::NotFound(format!("{image_id} with member {member_id}"))
}

/// Whether `ctx` sees the membership of `member_id`: the image's owner (or an admin) sees
/// every member, a member only itself.
fn sees_member(ctx: &RequestContext, image: &Image, member_id: &str) -> bool {
    super::query::can_modify(ctx, image) || ctx.project_id.as_deref() == Some(member_id)
}

/// `POST /v2/images/{id}/members`: the owner shares its shared image with project
/// `member_id`, pending until that project answers.
pub fn add(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    image_id: &str,
    member_id: &str,
) -> Result<Membership, ImageError> {
    if member_id.is_empty() || member_id.len() > 255 {
        return Err(ImageError::InvalidField {
            field: "member".into(),
            reason: "a project id of 1 to 255 characters".into(),
        });
    }
    let now = Timestamp::now();
    let image = db
        .update_image(image_id, &mut |image| {
            check_modifiable(ctx, image)?;
            only_shared(image)?;
            if image.members.contains_key(member_id) {
                return Err(ImageError::MemberExists {
                    image_id: image_id.to_owned(),
                    member_id: member_id.to_owned(),
                });
            }
            if image.members.len() >= MAX_MEMBERS {
                return Err(ImageError::TooManyMembers(MAX_MEMBERS));
            }
            let member = ImageMember {
                status: MemberStatus::Pending,
                created_at: now,
                updated_at: now,
            };
            image.members.insert(member_id.to_owned(), member);
            Ok(true)
        })?
        .ok_or_else(|| not_found(image_id))?;
    membership(&image, member_id).ok_or_else(|| no_member(image_id, member_id))
}

/// `GET /v2/images/{id}/members`: every member for the owner, the caller's own membership
/// for a member.
pub fn list(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    image_id: &str,
) -> Result<Vec<Membership>, ImageError> {
    let image = visible(db, ctx, image_id)?;
    only_shared(&image)?;
    Ok(image
        .members
        .keys()
        .filter(|m| sees_member(ctx, &image, m))
        .filter_map(|m| membership(&image, m))
        .collect())
}

/// `GET /v2/images/{id}/members/{member_id}`.
pub fn get(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    image_id: &str,
    member_id: &str,
) -> Result<Membership, ImageError> {
    let image = visible(db, ctx, image_id)?;
    only_shared(&image)?;
    if !sees_member(ctx, &image, member_id) {
        return Err(no_member(image_id, member_id));
    }
    membership(&image, member_id).ok_or_else(|| no_member(image_id, member_id))
}

/// `PUT /v2/images/{id}/members/{member_id}`: the member project, and only it, accepts,
/// rejects or puts back to pending an image shared with it.
pub fn set_status(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    image_id: &str,
    member_id: &str,
    status: &str,
) -> Result<Membership, ImageError> {
    let status = MemberStatus::parse(status).ok_or_else(|| ImageError::InvalidField {
        field: "status".into(),
        reason: format!("{status:?} is not one of pending, accepted, rejected"),
    })?;
    let image = db
        .update_image(image_id, &mut |image| {
            if !super::query::can_see(ctx, image) {
                return Err(not_found(image_id));
            }
            only_shared(image)?;
            if !sees_member(ctx, image, member_id) {
                return Err(no_member(image_id, member_id));
            }
            if ctx.project_id.as_deref() != Some(member_id) {
                return Err(ImageError::Forbidden(format!(
                    "Only project {member_id} itself may accept or reject image {image_id}."
                )));
            }
            let Some(member) = image.members.get_mut(member_id) else {
                return Err(no_member(image_id, member_id));
            };
            member.status = status;
            member.updated_at = Timestamp::now();
            Ok(true)
        })?
        .ok_or_else(|| not_found(image_id))?;
    membership(&image, member_id).ok_or_else(|| no_member(image_id, member_id))
}

/// `DELETE /v2/images/{id}/members/{member_id}`: the owner stops sharing with a project.
pub fn remove(
    db: &dyn ImageRecordStore,
    ctx: &RequestContext,
    image_id: &str,
    member_id: &str,
) -> Result<(), ImageError> {
    db.update_image(image_id, &mut |image| {
        if !super::query::can_see(ctx, image) {
            return Err(not_found(image_id));
        }
        only_shared(image)?;
        if !sees_member(ctx, image, member_id) || !image.members.contains_key(member_id) {
            return Err(no_member(image_id, member_id));
        }
        if !super::query::can_modify(ctx, image) {
            return Err(ImageError::Forbidden(format!(
                "Only the owner of image {image_id} may remove its members."
            )));
        }
        image.members.remove(member_id);
        Ok(true)
    })?
    .ok_or_else(|| not_found(image_id))?;
    Ok(())
}
