//! `X-Tokengate: gateway` tells the gateway's own answers from the cluster's: present on its
//! errors and its API, absent from forwarded responses even when the cluster sends it.

use crate::common::upstream::default_response;
use crate::common::{FakeUpstream, TestGateway, FLEET};
use http::HeaderValue;
use reqwest::Method;

const HEADER: &str = "x-tokengate";

#[tokio::test]
async fn the_gateways_own_answers_carry_the_header_and_forwarded_ones_never_do() {
    let upstream = FakeUpstream::builder()
        .handler(|_| {
            let mut response = default_response();
            response
                .headers_mut()
                .insert(HEADER, HeaderValue::from_static("gateway"));
            async move { response }
        })
        .start()
        .await;
    let gw = TestGateway::start(&upstream).await;

    let unauthenticated = crate::common::client()
        .get(gw.url("/_cluster/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(unauthenticated.headers()[HEADER], "gateway");

    let created = gw
        .as_elastic(
            Method::POST,
            "/_security/service/elastic/fleet-server/credential/token/marked",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    assert_eq!(created.headers()[HEADER], "gateway");

    let value = gw.create_token(FLEET, "t1").await;
    let forwarded = gw
        .with_token(Method::GET, "/_cluster/health", &value)
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
    assert!(
        forwarded.headers().get(HEADER).is_none(),
        "{:?}",
        forwarded.headers()
    );
}
