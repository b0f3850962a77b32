//! Structure comparison (in progress).
/// A structure difference.
pub struct StructureDiff;
/// Compare two schemas.
pub fn compare_structure() {}
