//! Coalescing against a fake ECS, on tokio's paused clock (so windows are measured exactly).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::controller::ecs::observe::{Lookup, Observer};
use crate::testing::{FakeEcs, api_error, id, target};
use ecs_client::{
    Accepted, EcsApi, EcsError, ErrorClass, Instance, PowerRequest, RebootOptions, StartOptions,
    StopOptions,
};

const REGION: &str = "cn-hangzhou";

/// Observes every target at once; each answer with how long it took.
async fn observe_all(
    observer: &Arc<BatchingObserver>,
    targets: Vec<Lookup>,
) -> Vec<(Lookup, Result<Option<Instance>, EcsError>, Duration)> {
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|t| {
            let observer = observer.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let answer = observer.observe(&t).await;
                (t, answer, start.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

// ---- observation ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_burst_of_250_observations_costs_three_describe_calls_and_each_gets_its_own_instance() {
    let ecs = FakeEcs::new();
    let observer = Arc::new(BatchingObserver::new(BatchSettings::default()));
    let mut targets: Vec<Lookup> = (0..249)
        .map(|n| target(&ecs, "default", REGION, &id(n)))
        .collect();
    // One instance ECS does not know.
    targets.push(target(&ecs, "default", REGION, "i-5000"));
    let answers = observe_all(&observer, targets).await;

    let describes = ecs.calls_of("DescribeInstances");
    let sizes: Vec<usize> = describes.iter().map(|c| c.ids.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50], "{describes:?}");
    for (target, answer, _) in answers {
        let found = answer.unwrap();
        if target.instance_id == "i-5000" {
            assert_eq!(
                found, None,
                "an unknown instance is None for its caller alone"
            );
        } else {
            assert_eq!(found.unwrap().instance_id, target.instance_id);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn observations_are_shared_only_within_one_credential_set_and_region() {
    let ecs = FakeEcs::new();
    let observer = Arc::new(BatchingObserver::new(BatchSettings::default()));
    let targets = vec![
        target(&ecs, "default", REGION, "i-1"),
        target(&ecs, "default", REGION, "i-2"),
        target(&ecs, "tenant-a", REGION, "i-3"),
        target(&ecs, "default", "cn-beijing", "i-4"),
    ];
    let answers = observe_all(&observer, targets).await;
    assert!(
        answers
            .iter()
            .all(|(_, a, _)| a.as_ref().unwrap().is_some())
    );
    let mut groups: Vec<(String, Vec<String>)> = ecs
        .calls_of("DescribeInstances")
        .into_iter()
        .map(|c| (c.region, c.ids))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            ("cn-beijing".to_string(), vec!["i-4".to_string()]),
            (
                REGION.to_string(),
                vec!["i-1".to_string(), "i-2".to_string()]
            ),
            (REGION.to_string(), vec!["i-3".to_string()]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_observation_waits_only_the_quiet_gap_and_a_trickle_no_longer_than_the_window() {
    let ecs = FakeEcs::new();
    let settings = BatchSettings::default();
    let observer = Arc::new(BatchingObserver::new(settings));
    let lone = observe_all(&observer, vec![target(&ecs, "default", REGION, "i-1")]).await;
    // Quiet gap, then the fake's 2 ms answer.
    assert_eq!(lone[0].2, settings.quiet + Duration::from_millis(2));

    // A call every 4 ms keeps the batch open (gaps shorter than the quiet gap), but nobody
    // waits more than the window.
    let ecs = FakeEcs::new();
    let mut tasks = Vec::new();
    for n in 0..30 {
        let observer = observer.clone();
        let t = target(&ecs, "default", REGION, &id(n));
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            observer.observe(&t).await.unwrap();
            start.elapsed()
        }));
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    for task in tasks {
        let waited = task.await.unwrap();
        assert!(
            waited <= settings.window + Duration::from_millis(2),
            "{waited:?}"
        );
    }
    let sizes: Vec<usize> = ecs
        .calls_of("DescribeInstances")
        .iter()
        .map(|c| c.ids.len())
        .collect();
    assert!(
        sizes.len() <= 3 && sizes.iter().sum::<usize>() == 30,
        "{sizes:?}"
    );
    assert!(
        ecs.calls()
            .iter()
            .all(|c| c.at < Duration::from_millis(200))
    );
}

#[tokio::test(start_paused = true)]
async fn a_describe_whose_callers_all_left_while_it_waited_for_a_token_is_never_sent() {
    // One DescribeInstances a second.
    let ecs = FakeEcs::rate_limited(1.0);
    let observer = Arc::new(BatchingObserver::new(BatchSettings::default()));
    observe_all(&observer, vec![target(&ecs, "default", REGION, &id(1))]).await;
    let queued: Vec<_> = [2, 3]
        .into_iter()
        .map(|n| {
            let observer = observer.clone();
            let t = target(&ecs, "default", REGION, &id(n));
            tokio::spawn(async move { observer.observe(&t).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The lease is lost: every reconcile in flight is dropped.
    for reconcile in queued {
        reconcile.abort();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent: Vec<Vec<String>> = ecs.calls().into_iter().map(|c| c.ids).collect();
    assert_eq!(sent, vec![vec![id(1)]]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_describe_is_every_callers_error() {
    let ecs = FakeEcs::new();
    ecs.fail_requests(api_error("Throttling.User", 400));
    let observer = Arc::new(BatchingObserver::new(BatchSettings::default()));
    let targets = (0..5)
        .map(|n| target(&ecs, "default", REGION, &id(n)))
        .collect();
    for (_, answer, _) in observe_all(&observer, targets).await {
        assert_eq!(answer.unwrap_err().class(), ErrorClass::Throttled);
    }
    assert_eq!(
        ecs.calls().len(),
        1,
        "one call failed, nothing retried here"
    );
}

// ---- actions ---------------------------------------------------------------------------------

/// Starts every id at once through `api`; each answer by id.
async fn start_all(
    api: &Arc<BatchingEcs>,
    ids: Vec<String>,
    options: StartOptions,
) -> HashMap<String, Result<Accepted, EcsError>> {
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let answer = api.power(REGION, &i, PowerRequest::Start(options)).await;
                (i, answer)
            })
        })
        .collect();
    let mut out = HashMap::new();
    for task in tasks {
        let (i, answer) = task.await.unwrap();
        out.insert(i, answer);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn starts_go_out_100_at_a_time_and_each_caller_gets_its_own_item_result() {
    let ecs = FakeEcs::new();
    ecs.fail_item("i-7", "IncorrectInstanceStatus");
    ecs.fail_item("i-120", "InstanceLockedForSecurity");
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let answers = start_all(&api, (0..150).map(id).collect(), StartOptions::default()).await;

    let batches = ecs.calls_of("StartInstances");
    assert_eq!(
        batches.iter().map(|c| c.ids.len()).collect::<Vec<_>>(),
        vec![100, 50]
    );
    assert!(ecs.calls_of("StartInstance").is_empty());
    let wrong_state = answers["i-7"].as_ref().unwrap_err();
    assert_eq!(wrong_state.code(), "IncorrectInstanceStatus");
    assert_eq!(wrong_state.class(), ErrorClass::WrongState);
    assert_eq!(
        answers["i-120"].as_ref().unwrap_err().class(),
        ErrorClass::Locked
    );
    let first = answers["i-0"].as_ref().unwrap();
    assert_eq!(first.request_id, "req-1", "the batch's RequestId");
    assert_eq!(answers["i-149"].as_ref().unwrap().request_id, "req-2");
    assert_eq!(answers.values().filter(|a| a.is_ok()).count(), 148);
}

#[tokio::test(start_paused = true)]
async fn an_item_code_nobody_knows_counts_as_possibly_executed() {
    let ecs = FakeEcs::new();
    ecs.fail_item("i-1", "SomethingBrandNew");
    ecs.fail_item("i-2", "InternalError");
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let tasks: Vec<_> = ["i-1", "i-2", "i-3"]
        .into_iter()
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.power(REGION, i, PowerRequest::Reboot(RebootOptions::default()))
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(ecs.calls_of("RebootInstances").len(), 1);
    // Both stay ambiguous: the reconciler keeps the reboot in flight instead of repeating it.
    assert_eq!(
        answers[0].as_ref().unwrap_err().class(),
        ErrorClass::Transient
    );
    assert_eq!(
        answers[1].as_ref().unwrap_err().class(),
        ErrorClass::Transient
    );
    assert!(answers[2].is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_every_callers_error_and_is_not_sent_again() {
    let ecs = FakeEcs::new();
    ecs.fail_requests(EcsError::Transport {
        action: "RebootInstances".into(),
        endpoint: "http://ecs".into(),
        detail: "connection reset".into(),
    });
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let tasks: Vec<_> = (0..4)
        .map(|n| {
            let api = api.clone();
            tokio::spawn(async move {
                api.power(
                    REGION,
                    &id(n),
                    PowerRequest::Reboot(RebootOptions::default()),
                )
                .await
            })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, EcsError::Transport { .. }), "{err:?}");
    }
    assert_eq!(
        ecs.calls().len(),
        1,
        "no single-call fallback after a possibly executed batch"
    );
}

#[tokio::test(start_paused = true)]
async fn different_options_and_dry_runs_never_share_a_batch() {
    let ecs = FakeEcs::new();
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let plain = StartOptions::default();
    let dry = StartOptions {
        dry_run: true,
        ..StartOptions::default()
    };
    let local_disk = StartOptions {
        init_local_disk: true,
        ..StartOptions::default()
    };
    let (a, b, c, d, e) = tokio::join!(
        api.power(REGION, "i-1", PowerRequest::Start(plain)),
        api.power(REGION, "i-2", PowerRequest::Start(plain)),
        api.power(REGION, "i-3", PowerRequest::Start(dry)),
        api.power(REGION, "i-4", PowerRequest::Start(dry)),
        api.power(REGION, "i-5", PowerRequest::Start(local_disk)),
    );
    for answer in [a, b, c, d, e] {
        answer.unwrap();
    }
    let stop = StopOptions {
        force: true,
        ..StopOptions::default()
    };
    let plain_stop = StopOptions::default();
    let (f, g) = tokio::join!(
        api.power(REGION, "i-6", PowerRequest::Stop(stop)),
        api.power(REGION, "i-7", PowerRequest::Stop(plain_stop)),
    );
    f.unwrap();
    g.unwrap();
    let mut seen: Vec<(&str, Vec<String>)> =
        ecs.calls().into_iter().map(|c| (c.action, c.ids)).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("StartInstance", vec!["i-3".to_string()]),
            ("StartInstance", vec!["i-4".to_string()]),
            ("StartInstance", vec!["i-5".to_string()]),
            ("StartInstances", vec!["i-1".to_string(), "i-2".to_string()]),
            ("StopInstance", vec!["i-6".to_string()]),
            ("StopInstance", vec!["i-7".to_string()]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_action_is_the_single_call_after_the_quiet_gap() {
    let ecs = FakeEcs::new();
    let settings = BatchSettings::default();
    let api = BatchingEcs::new(ecs.clone(), settings);
    let start = Instant::now();
    let accepted = api
        .power(
            REGION,
            "i-1",
            PowerRequest::Reboot(RebootOptions::default()),
        )
        .await
        .unwrap();
    assert_eq!(start.elapsed(), settings.quiet + Duration::from_millis(2));
    assert_eq!(accepted.request_id, "req-1");
    assert_eq!(ecs.calls_of("RebootInstance").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_before_the_batch_leaves_is_not_in_it() {
    let ecs = FakeEcs::new();
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let gone = {
        let api = api.clone();
        tokio::spawn(async move {
            api.power(
                REGION,
                "i-1",
                PowerRequest::Reboot(RebootOptions::default()),
            )
            .await
        })
    };
    tokio::task::yield_now().await;
    gone.abort();
    let options = RebootOptions::default();
    let (a, b) = tokio::join!(
        api.power(REGION, "i-2", PowerRequest::Reboot(options)),
        api.power(REGION, "i-3", PowerRequest::Reboot(options)),
    );
    a.unwrap();
    b.unwrap();
    let sent: Vec<String> = ecs.calls().into_iter().flat_map(|c| c.ids).collect();
    assert!(!sent.contains(&"i-1".to_string()), "{sent:?}");
    assert_eq!(sent.len(), 2);
}

/// A lost lease drops the reconciles; their batch, queued behind the rate limit, must not go
/// out after them (the new leader is acting on those instances by then).
#[tokio::test(start_paused = true)]
async fn a_batch_whose_callers_all_left_while_it_waited_for_a_token_is_never_sent() {
    // One StopInstances a second.
    let ecs = FakeEcs::rate_limited(1.0);
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let options = StopOptions::default();
    let (a, b) = tokio::join!(
        api.power(REGION, "i-1", PowerRequest::Stop(options)),
        api.power(REGION, "i-2", PowerRequest::Stop(options)),
    );
    a.unwrap();
    b.unwrap();
    // The next batch waits for the next token, due a second after the first.
    let queued: Vec<_> = ["i-3", "i-4"]
        .into_iter()
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move { api.power(REGION, i, PowerRequest::Stop(options)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ecs.calls_of("StopInstances").len(), 1);
    // The lease is lost: every reconcile in flight is dropped.
    for reconcile in queued {
        reconcile.abort();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent: Vec<Vec<String>> = ecs.calls().into_iter().map(|c| c.ids).collect();
    assert_eq!(sent, vec![vec!["i-1".to_string(), "i-2".to_string()]]);
}

#[tokio::test(start_paused = true)]
async fn the_same_instance_twice_never_shares_a_batch() {
    let ecs = FakeEcs::new();
    let api = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let options = StopOptions::default();
    let (a, b, c) = tokio::join!(
        api.power(REGION, "i-1", PowerRequest::Stop(options)),
        api.power(REGION, "i-1", PowerRequest::Stop(options)),
        api.power(REGION, "i-2", PowerRequest::Stop(options)),
    );
    for answer in [a, b, c] {
        answer.unwrap();
    }
    for call in ecs.calls() {
        let mut ids = call.ids.clone();
        ids.dedup();
        assert_eq!(ids.len(), call.ids.len(), "{call:?}");
    }
    assert_eq!(ecs.calls().iter().map(|c| c.ids.len()).sum::<usize>(), 3);
}

#[tokio::test(start_paused = true)]
async fn while_a_small_batch_waits_on_ecs_newcomers_fill_the_next_one() {
    // ECS (or the rate limiter in front of it) takes 300 ms per call.
    let ecs = FakeEcs::new();
    ecs.set_latency(Duration::from_millis(300));
    let observer = Arc::new(BatchingObserver::new(BatchSettings::default()));
    // A trickle: one observation every 20 ms for a second (each gap longer than the quiet gap).
    let mut tasks = Vec::new();
    for n in 0..50 {
        let observer = observer.clone();
        let t = target(&ecs, "default", REGION, &id(n));
        tasks.push(tokio::spawn(async move { observer.observe(&t).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_some());
    }
    let describes = ecs.calls_of("DescribeInstances");
    // Without holding back, each 10 ms quiet gap would send a call: 50 of them.
    assert!(
        describes.len() <= 5,
        "{:?}",
        describes.iter().map(|c| c.ids.len()).collect::<Vec<_>>()
    );
    assert_eq!(describes.iter().map(|c| c.ids.len()).sum::<usize>(), 50);
}

/// A batch that fell due while an earlier batch of its key was in flight, and was joined again
/// before that one came back, is still sent. (It was left with no one to send it: its timer had
/// handed it to the batch in flight, which found it no longer due. Its callers waited forever;
/// on a loaded machine this hung every observation of a 150-instance fleet.)
#[tokio::test(start_paused = true)]
async fn a_batch_that_fell_due_behind_another_is_sent_even_if_joined_again() {
    let ms = Duration::from_millis;
    let settings = BatchSettings {
        window: ms(50),
        quiet: ms(10),
        max_batch: 100,
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sent: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
    let flush: FlushFn<&'static str, u32, u32> = {
        let (gate, sent) = (gate.clone(), sent.clone());
        Arc::new(move |_key, waiters: Vec<Waiter<u32, u32>>| {
            let (gate, sent) = (gate.clone(), sent.clone());
            Box::pin(async move {
                sent.lock()
                    .unwrap()
                    .push(waiters.iter().map(|w| w.item).collect());
                if waiters.iter().any(|w| w.item == 1) {
                    let _permit = gate.acquire().await;
                }
                for w in waiters {
                    let _ = w.reply.send(w.item);
                }
            })
        })
    };
    let batches = Coalescer::new(settings, flush);
    let first = batches.submit("k", 1, |_| false).unwrap();
    // The first batch leaves after its quiet gap and stays in flight (at the gate).
    tokio::time::sleep(ms(15)).await;
    let second = batches.submit("k", 2, |_| false).unwrap();
    // The second falls due (quiet gap) while the first is in flight…
    tokio::time::sleep(ms(15)).await;
    // …and is joined again, which puts its due time 10 ms ahead…
    let third = batches.submit("k", 3, |_| false).unwrap();
    tokio::time::sleep(ms(1)).await;
    // …when the first comes back.
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), 1);
    let answers = tokio::time::timeout(Duration::from_secs(10), async {
        (second.await.unwrap(), third.await.unwrap())
    })
    .await
    .expect("the second batch is sent");
    assert_eq!(answers, (2, 3));
    assert_eq!(*sent.lock().unwrap(), vec![vec![1], vec![2, 3]]);
}

/// Issue 24 item 6, in a batch: a call whose admission is withdrawn while it waits for its
/// batch is left out when the batch leaves (answered `NotSent`); the others go.
#[tokio::test(start_paused = true)]
async fn a_call_no_longer_admitted_when_its_batch_leaves_is_not_sent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let ecs = FakeEcs::new();
    let batching = Arc::new(BatchingEcs::new(ecs.clone(), BatchSettings::default()));
    let admitted = Arc::new(AtomicBool::new(true));
    let start = PowerRequest::Start(StartOptions::default());
    let calls: Vec<_> = (0..3)
        .map(|n| {
            let batching = batching.clone();
            let flag = admitted.clone();
            tokio::spawn(async move {
                let admission: ecs_client::Admission = match n {
                    0 => Arc::new(move || flag.load(Ordering::SeqCst)),
                    _ => Arc::new(|| true),
                };
                batching.power_if(REGION, &id(n), start, &admission).await
            })
        })
        .collect();
    // The three wait for their batch; meanwhile the first one's namespace is withdrawn.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(ecs.calls().is_empty(), "nothing left before the window");
    admitted.store(false, Ordering::SeqCst);
    let answers = futures::future::join_all(calls).await;

    assert!(
        matches!(answers[0].as_ref().unwrap(), Err(EcsError::NotSent(_))),
        "{:?}",
        answers[0]
    );
    assert!(answers[1].as_ref().unwrap().is_ok() && answers[2].as_ref().unwrap().is_ok());
    let sent = ecs.calls_of("StartInstances");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ids, [id(1), id(2)]);
}
