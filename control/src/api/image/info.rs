//! `GET /v2/info/import`: the import methods (Glance's interoperable image import) served.
//! None are: images arrive by `PUT .../file` only. `/v2/info/stores` is not served either, as
//! in a Glance with one store (clients take its 404 as "no multi-store").

use crate::api::{Call, Fault, Reply};
use crate::image::IMPORT_METHODS;
use serde_json::json;

pub fn import(_call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": IMPORT_METHODS,
        }
    })))
}
