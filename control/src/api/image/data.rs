//! `PUT /v2/images/{id}/file` (streamed in, `application/octet-stream`, optional
//! `Content-MD5`) and `GET /v2/images/{id}/file` (streamed out with its `Content-MD5`).

use crate::api::body::StreamedFile;
use crate::api::{Call, Fault, Reply, ReplyBody};
use crate::image::pull::PullError;
use crate::image::{self, ImageStatus, UploadChecks};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::StatusCode;

pub fn upload(call: &Call<'_>) -> Result<Reply, Fault> {
    let media = call
        .header("content-type")
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !media.eq_ignore_ascii_case("application/octet-stream") {
        return Err(Fault::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Type {media:?}: send application/octet-stream"),
        ));
    }
    let checks = UploadChecks {
        md5: call.header("content-md5").map(content_md5).transpose()?,
    };
    let state = call.state;
    if state.puller.is_some() {
        // The copies the image will need, from the site as it is now, not as the image
        // replicator last saw it (a box may have joined since).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let boxes = handle
                .block_on(state.site.boxes())
                .map_err(Fault::internal)?;
            state.copy_rule.set_boxes(boxes.len());
        }
    }
    let mut body = call.body_reader();
    image::upload(
        state.image_records(),
        &state.images,
        &state.copy_rule,
        call.ctx(),
        call.param("image_id"),
        &mut body,
        checks,
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

fn no_copy(e: PullError) -> Fault {
    Fault::new(
        StatusCode::CONFLICT,
        format!("This box holds no copy of the image's data and could not fetch one: {e}"),
    )
}

/// `Content-MD5` as RFC 1864 writes it (base64 of the 16-byte digest), or as 32 hex digits.
fn content_md5(v: &str) -> Result<String, Fault> {
    let v = v.trim();
    if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(v.to_ascii_lowercase());
    }
    match STANDARD.decode(v) {
        Ok(d) if d.len() == 16 => Ok(crate::random::hex(&d)),
        _ => Err(Fault::bad_request(format!(
            "Content-MD5 {v:?} is neither base64 of an MD5 digest nor 32 hexadecimal digits"
        ))),
    }
}

pub fn download(call: &Call<'_>) -> Result<Reply, Fault> {
    let state = call.state;
    let id = call.param("image_id");
    if let Some(puller) = &state.puller {
        // A box of a site without the data fetches a copy from one that has it, then serves
        // it: the copy stays, as the image replicator would have made it anyway.
        let image = image::get(state.image_records(), call.ctx(), id)?;
        // Not for a deactivated image a member may not download anyway.
        let may_read = image.status != ImageStatus::Deactivated || call.ctx().is_admin();
        let has_data = image.os_hash_value.is_some()
            && may_read
            && (image.status == ImageStatus::Saving || image.status.has_stored_data());
        if has_data && !puller.holds(id).map_err(no_copy)? {
            puller.ensure(id, false).map_err(no_copy)?;
        }
    }
    let Some(f) = image::download(state.image_records(), &state.images, call.ctx(), id)? else {
        return Ok(Reply::empty(StatusCode::NO_CONTENT));
    };
    let mut reply = Reply {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: ReplyBody::File(StreamedFile::new(f.file, f.size)),
    };
    if let Some(md5) = f.checksum {
        reply = reply.header("Content-MD5", md5);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_in_both_spellings() {
        // MD5("abc")
        let hex = "900150983cd24fb0d6963f7d28e17f72";
        assert_eq!(content_md5("kAFQmDzST7DWlj99KOF/cg==").unwrap(), hex);
        assert_eq!(content_md5(&hex.to_uppercase()).unwrap(), hex);
        assert!(content_md5("abc").is_err());
        assert!(content_md5("YWJj").is_err());
    }
}
