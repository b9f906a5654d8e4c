//! Tuples of extractors: a key made of several parts.

use http::Request;

use super::{Global, KeyExtractor};

/// The hint of a tuple: the hint of its only part that can say something specific, or a
/// general one.
fn combined_hint<B>(hints: &[&'static str]) -> &'static str {
    let default = KeyExtractor::<B>::missing_key_hint(&Global);
    let mut specific = hints.iter().filter(|hint| **hint != default);
    match (specific.next(), specific.next()) {
        (Some(only), None) => only,
        (None, _) => default,
        (Some(_), Some(_)) => {
            "one part of a combined key was missing: the request lacks something that one of \
             the tuple's key extractors reads (a peer address, a header); check each"
        }
    }
}

macro_rules! tuple_extractor {
    ($($part:ident . $index:tt),+) => {
        /// A key made of several parts; a request has one only if it has every part.
        ///
        /// See the [module docs](crate::key#several-parts) for an example.
        impl<ReqB, $($part),+> KeyExtractor<ReqB> for ($($part,)+)
        where
            $($part: KeyExtractor<ReqB>,)+
        {
            type Key = ($($part::Key,)+);

            #[inline]
            fn extract(&self, req: &Request<ReqB>) -> Option<Self::Key> {
                Some(($(self.$index.extract(req)?,)+))
            }

            fn missing_key_hint(&self) -> &'static str {
                combined_hint::<ReqB>(&[$(self.$index.missing_key_hint()),+])
            }
        }
    };
}

tuple_extractor!(A.0, B.1);
tuple_extractor!(A.0, B.1, C.2);

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;
    use crate::{GrpcMethod, Header, PeerIp};

    fn call(path: &str, api_key: Option<&str>) -> Request<()> {
        let mut builder = Request::post(path).header("content-type", "application/grpc");
        if let Some(api_key) = api_key {
            builder = builder.header("x-api-key", api_key);
        }
        let mut req = builder.body(()).unwrap();
        req.extensions_mut()
            .insert("192.0.2.1:5000".parse::<SocketAddr>().unwrap());
        req
    }

    #[test]
    fn every_part_is_in_the_key() {
        let key = (PeerIp::new(), GrpcMethod);
        let (ip, method) = key.extract(&call("/a.B/C", None)).unwrap();
        assert_eq!(ip, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(method.as_str(), "/a.B/C");
        assert_ne!(
            key.extract(&call("/a.B/C", None)),
            key.extract(&call("/a.B/D", None))
        );
    }

    #[test]
    fn a_missing_part_means_no_key_and_the_hint_names_it() {
        let key = (Header::new("x-api-key"), GrpcMethod);
        assert!(key.extract(&call("/a.B/C", Some("k"))).is_some());
        assert!(key.extract(&call("/a.B/C", None)).is_none());
        let hint = KeyExtractor::<()>::missing_key_hint(&key);
        assert_eq!(
            hint,
            KeyExtractor::<()>::missing_key_hint(&Header::new("x-api-key"))
        );

        let three = (PeerIp::new(), Header::new("x-api-key"), GrpcMethod);
        assert!(three.extract(&call("/a.B/C", Some("k"))).is_some());
        assert!(three.extract(&call("/a.B/C", None)).is_none());
        assert!(KeyExtractor::<()>::missing_key_hint(&three).contains("one part"));
    }
}
