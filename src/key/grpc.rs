use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::Request;

use super::KeyExtractor;

/// The gRPC method of a call, `/package.Service/Method`: the request path.
///
/// On its own it gives each method one budget shared by all callers; combined with a caller's
/// key in a tuple, such as `(PeerIp::new(), GrpcMethod)`, each caller gets a budget per method.
/// The query string, which gRPC never sends, is not part of the key. Every request has a path
/// except an HTTP `CONNECT` to an authority, which therefore has no key.
///
/// Meant for gRPC, whose servers have a fixed set of method names. For HTTP routes with path
/// parameters (`/users/{id}`) every distinct path would be a key of its own.
///
/// ```
/// use http::Request;
/// use tower_ratelimit::{GrpcMethod, KeyExtractor};
///
/// let req = Request::post("/helloworld.Greeter/SayHello").body(()).unwrap();
/// let key = GrpcMethod.extract(&req).unwrap();
/// assert_eq!(key.as_str(), "/helloworld.Greeter/SayHello");
/// assert_eq!(key.service(), Some("helloworld.Greeter"));
/// assert_eq!(key.method(), Some("SayHello"));
/// ```
///
/// The path is the client's to choose, and the layer runs before the server looks it up: a
/// client that calls methods the server does not have (answered `UNIMPLEMENTED`) gets a key
/// for each. With a key per client and method, such as `(PeerIp::new(), GrpcMethod)`, one
/// client can so make as many keys as it sends requests, fill the store up to its cap, and
/// leave new clients the store's one overflow budget (see
/// [`MemoryStore`](crate::MemoryStore)). Where clients are not trusted, key the methods the
/// server has and count every other path as one:
///
/// ```
/// use http::Request;
/// use tower_ratelimit::{KeyExtractor, PeerIp};
///
/// const METHODS: [&str; 2] = ["/helloworld.Greeter/SayHello", "/helloworld.Greeter/SayBye"];
/// let method = |req: &Request<()>| {
///     let path = req.uri().path();
///     Some(METHODS.into_iter().find(|known| *known == path).unwrap_or("unknown"))
/// };
/// let key = (PeerIp::new(), method);
///
/// let call = |path: &str| {
///     let mut req = Request::post(path).body(()).unwrap();
///     req.extensions_mut().insert("192.0.2.7:5000".parse::<std::net::SocketAddr>().unwrap());
///     key.extract(&req).unwrap().1
/// };
/// assert_eq!(call("/helloworld.Greeter/SayBye"), "/helloworld.Greeter/SayBye");
/// assert_eq!(call("/helloworld.Greeter/Made1"), call("/x.Y/Made2"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMethod;

impl<B> KeyExtractor<B> for GrpcMethod {
    type Key = MethodKey;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<MethodKey> {
        req.uri().path_and_query().cloned().map(MethodKey)
    }
}

/// A request path used as a key, from [`GrpcMethod`].
///
/// Taking it from a request costs no allocation: it shares the request's bytes. Cloning it
/// copies the path, so that a key kept past its request holds only itself. (The stores keep a
/// key's bytes, not the `MethodKey`.)
#[derive(Eq)]
pub struct MethodKey(PathAndQuery);

impl MethodKey {
    /// The path, such as `/helloworld.Greeter/SayHello`.
    pub fn as_str(&self) -> &str {
        self.0.path()
    }

    /// The fully qualified service name of a gRPC path, such as `helloworld.Greeter`.
    pub fn service(&self) -> Option<&str> {
        self.split().map(|(service, _)| service)
    }

    /// The method name of a gRPC path, such as `SayHello`.
    pub fn method(&self) -> Option<&str> {
        self.split().map(|(_, method)| method)
    }

    /// `/service/method` as its two non-empty parts.
    fn split(&self) -> Option<(&str, &str)> {
        let (service, method) = self.as_str().strip_prefix('/')?.split_once('/')?;
        (!service.is_empty() && !method.is_empty() && !method.contains('/'))
            .then_some((service, method))
    }
}

impl Clone for MethodKey {
    fn clone(&self) -> Self {
        let path = Bytes::copy_from_slice(self.as_str().as_bytes());
        // A path that parsed once parses again; should it not, sharing is still correct.
        MethodKey(PathAndQuery::from_maybe_shared(path).unwrap_or_else(|_| self.0.clone()))
    }
}

impl PartialEq for MethodKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Hash for MethodKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MethodKey").field(&self.as_str()).finish()
    }
}

impl fmt::Display for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str) -> MethodKey {
        GrpcMethod
            .extract(&Request::post(uri).body(()).unwrap())
            .unwrap()
    }

    #[test]
    fn the_query_is_not_part_of_the_key() {
        assert_eq!(key("/a.B/C?x=1"), key("/a.B/C"));
        assert_ne!(key("/a.B/C"), key("/a.B/D"));
        assert_eq!(key("/a.B/C?x=1").to_string(), "/a.B/C");
    }

    #[test]
    fn clones_are_equal_copies() {
        let original = key("/grpc.health.v1.Health/Check");
        let copy = original.clone();
        assert_eq!(copy, original);
        assert_ne!(copy.as_str().as_ptr(), original.as_str().as_ptr());
        assert_eq!(copy.service(), Some("grpc.health.v1.Health"));
        assert_eq!(copy.method(), Some("Check"));
    }

    #[test]
    fn paths_that_are_not_grpc_methods_have_no_parts() {
        for path in ["/", "/a", "//m", "/s/", "/a/b/c"] {
            let key = key(path);
            assert_eq!((key.service(), key.method()), (None, None), "{path}");
        }
    }

    #[test]
    fn a_request_without_a_path_has_no_key() {
        let connect = Request::connect("example.com:443").body(()).unwrap();
        assert!(GrpcMethod.extract(&connect).is_none());
    }
}
