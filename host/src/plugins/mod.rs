//! Plugins: finding files (`discover`), loading them under the version policy
//! (`load`), calling them safely (`handle`), resolving dependencies (`deps`),
//! the registry (`registry`), the lifecycle (`lifecycle`) and library images
//! across reloads (`image`).

pub mod deps;
pub mod discover;
pub mod handle;
pub mod image;
pub mod lifecycle;
pub mod load;
pub mod registry;
