//! Volume types: how a volume's blocks are provisioned. Two fixed types, named by Cinder's own
//! `provisioning:type` extra spec: `thin` (sparse, the default) and `thick` (every block
//! reserved up front, so a guest never meets a full host disk).

use outpost_image_store::Provisioning;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeType {
    /// Stable, so clients may remember it.
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub provisioning: Provisioning,
}

pub const THIN: VolumeType = VolumeType {
    id: "3f2b0d6e-7c1a-4e1f-9b8a-5d0c6e2f7a11",
    name: "thin",
    description: "Sparse file: blocks are allocated as the guest writes them.",
    provisioning: Provisioning::Thin,
};

pub const THICK: VolumeType = VolumeType {
    id: "9a4c1e7b-2d3f-4b6a-8c5e-0f1d2a3b4c22",
    name: "thick",
    description: "Fully allocated file: every block is reserved when the volume is made.",
    provisioning: Provisioning::Thick,
};

pub const ALL: [VolumeType; 2] = [THIN, THICK];

pub const DEFAULT: VolumeType = THIN;

/// The extra spec Cinder drivers read for thin or thick provisioning.
pub const PROVISIONING_SPEC: &str = "provisioning:type";

/// A type by name or id (clients send either as `volume_type`).
pub fn find(name_or_id: &str) -> Option<VolumeType> {
    ALL.into_iter()
        .find(|t| t.name == name_or_id || t.id == name_or_id)
}

/// The type a volume records by name.
pub fn by_name(name: &str) -> Option<VolumeType> {
    ALL.into_iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_by_name_or_id() {
        assert_eq!(find("thick"), Some(THICK));
        assert_eq!(find(THIN.id), Some(THIN));
        assert_eq!(find("gold"), None);
        assert_eq!(DEFAULT.provisioning, Provisioning::Thin);
    }
}
