//! Glance v2 handlers under `/image/v2`: image records ([`images`]), their data ([`data`]),
//! their members ([`members`]), the JSON Schemas clients read ([`schemas`]) and what the
//! service offers ([`info`]); [`views`] renders images as Glance does.

pub mod data;
pub mod images;
pub mod info;
pub mod members;
pub mod schemas;
mod views;
