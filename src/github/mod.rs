//! The GitHub side: Actions workflow commands and files, the sticky PR
//! comment, and proposing a refreshed baseline as a pull request.

pub mod actions;
pub mod api;
pub mod comment;
pub mod propose;
