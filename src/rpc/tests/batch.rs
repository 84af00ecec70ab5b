//! Tests of `batch`, `sequence` and `ifelse`.

use serde_json::{Value, json};

use super::util::*;

fn info() -> Value {
    json!({"method": "info", "params": {}})
}

fn bad_retrieve(pk: &str) -> Value {
    json!({"method": "retrieve", "params": {"pubkey": pk}})
}

#[tokio::test]
async fn batch_runs_all_and_keeps_order() {
    let c = Client::new(1);
    let pk = c.session().to_hex();
    let n = net(1, &c.session());
    let store = json!({"method": "store", "params": {"pubkey": pk, "timestamp": NOW, "ttl": DAY, "data": "YQ=="}});
    let reqs = json!({"requests": [info(), bad_retrieve(&pk), store, {"method": "active_nodes_bin", "params": {}}]});
    let r = n.call("batch", reqs).await;
    assert_eq!(r.status, 200);
    let res = json_of(&r)["results"].as_array().expect("results").clone();
    assert_eq!(res.len(), 4);
    assert_eq!(res[0]["code"], json!(200));
    assert_eq!(res[0]["body"]["version"], json!([2, 8, 0]));
    assert_eq!(
        res[1],
        json!({"code": 401, "body": "retrieve: request signature required"})
    );
    assert_eq!(res[2]["code"], json!(200));
    assert!(res[2]["body"]["hash"].is_string());
    // Bytes bodies become base64 strings.
    let bin = crate::message::b64_decode(res[3]["body"].as_str().expect("b64")).expect("b64");
    assert_eq!(
        bin.len(),
        2 * crate::rpc::swarm_info::ACTIVE_NODE_RECORD_LEN
    );
    // Subrequest param errors stay in their result.
    let r = n
        .call(
            "batch",
            json!({"requests": [{"method": "get_swarm", "params": {}}, info()]}),
        )
        .await;
    let res = &json_of(&r)["results"];
    assert_eq!(
        res[0],
        json!({"code": 400, "body": "invalid request: Required field 'pubkey' missing"})
    );
    assert_eq!(res[1]["code"], json!(200));
}

#[tokio::test]
async fn sequence_stops_after_first_failure() {
    let c = Client::new(1);
    let pk = c.session().to_hex();
    let n = net(1, &c.session());
    let r = n
        .call(
            "sequence",
            json!({"requests": [info(), bad_retrieve(&pk), info()]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let res = json_of(&r)["results"].as_array().expect("results").clone();
    assert_eq!(res.len(), 2);
    assert_eq!(res[1]["code"], json!(401));
    let r = n
        .call("sequence", json!({"requests": [info(), info()]}))
        .await;
    assert_eq!(json_of(&r)["results"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn batch_structure_errors() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let no_field = "invalid request: Invalid batch request: no valid \"requests\" field";
    for method in ["batch", "sequence"] {
        assert_text(&n.call(method, json!({})).await, 400, no_field);
        assert_text(
            &n.call(method, json!({"requests": []})).await,
            400,
            no_field,
        );
        assert_text(
            &n.call(method, json!({"requests": {}})).await,
            400,
            no_field,
        );
        let many: Vec<Value> = (0..21).map(|_| info()).collect();
        assert_text(
            &n.call(method, json!({ "requests": many })).await,
            400,
            "invalid request: Invalid batch request: subrequest limit exceeded",
        );
        let twenty: Vec<Value> = (0..20).map(|_| info()).collect();
        assert_eq!(
            n.call(method, json!({ "requests": twenty })).await.status,
            200
        );
        assert_text(
            &n.call(method, json!({"requests": [{"method": "info"}]}))
                .await,
            400,
            "invalid request: Invalid batch request: subrequests must have method/params keys",
        );
        assert_text(
            &n.call(
                method,
                json!({"requests": [{"method": "nope", "params": {}}]}),
            )
            .await,
            400,
            "invalid request: Invalid batch subrequest: invalid method \"nope\"",
        );
        for meta in ["batch", "sequence", "ifelse"] {
            assert_text(
                &n.call(
                    method,
                    json!({"requests": [{"method": meta, "params": {}}]}),
                )
                .await,
                400,
                "invalid request: Invalid batch request: subrequests may not contain meta-requests",
            );
        }
    }
}

#[tokio::test]
async fn ifelse_conditions() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let cases = [
        (json!({"hf_at_least": [19, 4]}), true),
        (json!({"hf_at_least": [19, 5]}), false),
        (json!({"hf_at_least": [19]}), true),
        (json!({"hf_before": [20]}), true),
        (json!({"hf_before": [19, 4]}), false),
        (json!({"v_at_least": [2, 8]}), true),
        (json!({"v_at_least": [2, 8, 1]}), false),
        (json!({"v_before": [2, 9, 0]}), true),
        (json!({"height_at_least": 7}), true),
        (json!({"height_before": 7}), false),
        (json!({"hf_at_least": [19, 0], "height_before": 7}), false),
        (json!({}), true),
    ];
    for (cond, expected) in cases {
        let p = json!({"if": cond, "then": info(), "else": {"method": "get_swarm", "params": {}}});
        let r = n.call("ifelse", p).await;
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        assert_eq!(v["condition"], json!(expected), "{cond}");
        assert_eq!(
            (v["hf"].clone(), v["v"].clone(), v["height"].clone()),
            (json!([19, 4]), json!([2, 8, 0]), json!(7))
        );
        let code = if expected { 200 } else { 400 };
        assert_eq!(v["result"]["code"], json!(code), "{cond}");
    }
    // Missing branch: no result.
    let r = n
        .call("ifelse", json!({"if": {"hf_before": [1]}, "then": info()}))
        .await;
    let v = json_of(&r);
    assert_eq!(v["condition"], json!(false));
    assert!(v.get("result").is_none());
}

#[tokio::test]
async fn ifelse_nesting_and_errors() {
    let c = Client::new(1);
    let n = net(1, &c.session());
    let inner = json!({"method": "ifelse", "params": {"if": {}, "then": {"method": "batch", "params": {"requests": [info()]}}}});
    let r = n.call("ifelse", json!({"if": {}, "then": inner})).await;
    let v = json_of(&r);
    assert_eq!(v["result"]["code"], json!(200));
    assert_eq!(
        v["result"]["body"]["result"]["body"]["results"][0]["code"],
        json!(200)
    );
    let cases = [
        (
            json!({"then": info()}),
            "invalid request: Invalid ifelse request: no valid \"if\" field",
        ),
        (
            json!({"if": {}}),
            "invalid request: Invalid ifelse request: at least one of \"then\" or \"else\" is required",
        ),
        (
            json!({"if": {"sunny": true}, "then": info()}),
            "invalid request: Invalid ifelse request: unknown condition \"sunny\"",
        ),
        (
            json!({"if": {"hf_at_least": "19"}, "then": info()}),
            "invalid request: Invalid ifelse request: invalid value for \"hf_at_least\"",
        ),
        (
            json!({"if": {"v_before": [1, 2, 3, 4]}, "then": info()}),
            "invalid request: Invalid ifelse request: invalid value for \"v_before\"",
        ),
        (
            json!({"if": {}, "then": {"method": "info"}}),
            "invalid request: Invalid ifelse request: then/else must have method/params keys",
        ),
        (
            json!({"if": {}, "else": {"method": "nope", "params": {}}}),
            "invalid request: Invalid ifelse subrequest: invalid method \"nope\"",
        ),
    ];
    for (p, text) in cases {
        assert_text(&n.call("ifelse", p).await, 400, text);
    }
    // Deep nesting is bounded.
    let mut p = json!({"if": {}, "then": info()});
    for _ in 0..10 {
        p = json!({"if": {}, "then": {"method": "ifelse", "params": p}});
    }
    let r = n.call("ifelse", p).await;
    let mut v = json_of(&r).clone();
    let mut depth = 0;
    while v["result"]["code"] == json!(200) {
        v = v["result"]["body"].clone();
        depth += 1;
    }
    assert!(depth < 10);
    assert_eq!(
        v["result"]["body"],
        json!("invalid request: Invalid ifelse request: nesting too deep")
    );
}
