//! `GET /v2/schemas/...`: the image, member and metadefs schemas.

use crate::api::{Call, Fault, Reply};
use crate::image::{metadefs, schema};
use hyper::StatusCode;

pub fn image(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(schema::image()))
}

pub fn images(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(schema::images()))
}

pub fn member(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(schema::member()))
}

pub fn members(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(schema::members()))
}

pub fn metadefs(call: &Call<'_>) -> Result<Reply, Fault> {
    let kind = call.param("kind");
    metadefs::schema(kind).map(Reply::ok).ok_or_else(|| {
        Fault::new(
            StatusCode::NOT_FOUND,
            format!("No metadefs schema named {kind:?}"),
        )
    })
}
