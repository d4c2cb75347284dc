//! OAuth login, status, refresh and logout through the real CLI and host,
//! against the mock upstream's fake authorization server.
