//! `GET /v2/schemas/image` and `/v2/schemas/images`.

use crate::api::{Call, Fault, Reply};
use crate::image::schema;

pub fn image(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(schema::image()))
}

pub fn images(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(schema::images()))
}
