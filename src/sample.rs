//! sample: TEMPORARY STUB (the generator lands in the next commit).
#![allow(missing_docs)]
use std::path::Path;
pub struct Layout;
pub struct Written {
    pub tag: String,
}
pub struct ImageSpec;
impl Layout {
    pub fn create(_d: &Path) -> std::io::Result<Layout> {
        Err(std::io::Error::other("sample generator not built yet"))
    }
    pub fn add_image(&self, _s: &ImageSpec) -> std::io::Result<Written> {
        Err(std::io::Error::other("stub"))
    }
}
pub fn demo_specs() -> Vec<ImageSpec> {
    Vec::new()
}
