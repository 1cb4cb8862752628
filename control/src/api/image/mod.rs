//! Glance v2 handlers under `/image/v2`: image records ([`images`]), their data ([`data`]),
//! and the JSON Schemas clients read ([`schemas`]); [`views`] renders images as Glance does.

pub mod data;
pub mod images;
pub mod schemas;
mod views;
