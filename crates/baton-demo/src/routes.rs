//! What each request gets: the version on `/`, health on `/health`, 404 elsewhere.

use crate::http::{Request, Response};

/// Whether `/` should first sleep for the simulated work.
pub fn does_work(req: &Request) -> bool {
    req.path == "/"
}

/// The answer to `req` from an instance of `version` that is (or is no longer) healthy.
pub fn respond(req: &Request, version: &str, healthy: bool) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::new(405, "method not allowed\n");
    }
    match req.path.as_str() {
        "/" => Response::new(200, format!("{version}\n")),
        "/health" if healthy => Response::new(200, "ok\n"),
        "/health" => Response::new(503, "unhealthy\n"),
        _ => Response::new(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> Request {
        Request { method: method.to_owned(), path: path.to_owned(), keep_alive: true }
    }

    #[test]
    fn routes() {
        assert_eq!(respond(&req("GET", "/"), "v3", true), Response::new(200, "v3\n"));
        assert_eq!(respond(&req("GET", "/health"), "v3", true).status, 200);
        assert_eq!(respond(&req("GET", "/health"), "v3", false).status, 503);
        assert_eq!(respond(&req("GET", "/"), "v3", false).status, 200);
        assert_eq!(respond(&req("GET", "/nope"), "v3", true).status, 404);
        assert_eq!(respond(&req("POST", "/"), "v3", true).status, 405);
        assert!(does_work(&req("GET", "/")) && !does_work(&req("GET", "/health")));
    }
}
