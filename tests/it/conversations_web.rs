//! Conversations where people and the online bank read them (issue 17,
//! sections 3 and 4), over real HTTP, with conversations written by the
//! messages role (real broker and PostgreSQL when the services run) and
//! tokens from a real OpenID provider (`tests/oidc/issuer.mjs`):
//! - the customer archive API returns exactly the customer's 3-year window:
//!   nothing of another customer, nothing anonymous, nothing older (the
//!   clock travels, the sweeper deletes the customer copy at its expiry);
//!   a person's token or session is refused there, an archive client is
//!   refused on the staff routes; every request audited;
//! - compliance and QA read a conversation with a stated reason, the copy
//!   they may (the advisor's or archive copy, else the redacted analysis
//!   copy), the page saying which and until when; the advisor reads the
//!   conversation handed over to them; everyone else is refused; audited.

use crate::common;
use crate::conversations::{world, World};
use crate::oidc::{section, Provider, API, AUDIENCE};

use common::AddApproved;
use opptak::chat::{ChatConversation, Say};
use opptak_domain::model::{Channel, Desk, Sender, ServiceCategory};
use opptak_domain::time::{add_years, oslo_civil, Clock, SystemClock};
use opptak_review::identity::{Identity, Role};
use serde_json::{json, Value};

const SEC: i64 = 1_000_000;
const PW: &str = "correct horse battery staple";
const BANK: &str = "nettbank";
/// In the customer's first message: the full copies keep it, the analysis
/// copy replaces it.
const EMAIL: &str = "kari.nordmann@example.no";

/// One conversation as the test wrote it.
struct Conv {
    id: String,
    started: i64,
    ended: i64,
    texts: Vec<String>,
}

/// The review service with the OIDC provider, its users, and the messages
/// role writing conversations.
struct Site {
    w: World,
    p: Provider,
    server: common::WebService,
    http: reqwest::Client,
    prefix: String,
    /// Batches of conversations played so far (each has an id prefix of its own).
    batches: std::sync::atomic::AtomicUsize,
}

async fn site(name: &str) -> Option<Site> {
    let p = Provider::start().await?;
    let mut w = world(name).await;
    w.edges.config.oidc = Some(section(&p.issuer("a"), ""));
    w.edges.config.web.archive_clients = vec![BANK.to_owned()];
    let id = Identity::open(&w.edges.review()).await.unwrap();
    for (user, role, team) in [
        ("adv-anne", Role::Advisor, "oslo"),
        ("adv-bo", Role::Advisor, "oslo"),
        ("lead-lise", Role::TeamLead, "oslo"),
        ("qa-kari", Role::Qa, "qa"),
        ("co-cato", Role::Compliance, "compliance"),
        ("aud-astrid", Role::Auditor, "audit"),
    ] {
        id.add_approved("setup", user, user, role, team, PW).await.unwrap();
    }
    let server = common::WebService::start(&w.edges).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(Site {
        w,
        p,
        server,
        http,
        prefix: common::unique("cw"),
        batches: Default::default(),
    })
}

/// How a conversation goes.
struct Plan<'a> {
    name: &'a str,
    channel: Channel,
    customer: &'a str,
    advisor: &'a str,
    category: ServiceCategory,
    /// Aino hands over to this advisor after the first answer.
    handover_to: Option<&'a str>,
}

impl<'a> Plan<'a> {
    /// With Aino alone; anonymous when `customer` is empty.
    fn aino(name: &'a str, customer: &'a str) -> Self {
        Plan {
            name,
            channel: Channel::AinoChatbot,
            customer,
            advisor: "",
            category: ServiceCategory::General,
            handover_to: None,
        }
    }

    /// With Aino, then handed over to `advisor`.
    fn handover(name: &'a str, customer: &'a str, advisor: &'a str) -> Self {
        Plan {
            category: ServiceCategory::Loan,
            handover_to: Some(advisor),
            ..Plan::aino(name, customer)
        }
    }

    /// Investment advice from adv-bo in the advisor chat: every copy, the
    /// archive's too.
    fn invest(name: &'a str, customer: &'a str) -> Self {
        Plan::advisor(
            name,
            Channel::AdvisorChat,
            customer,
            "adv-bo",
            ServiceCategory::InvestmentAdvice,
        )
    }

    /// With `advisor` from the start.
    fn advisor(
        name: &'a str,
        channel: Channel,
        customer: &'a str,
        advisor: &'a str,
        category: ServiceCategory,
    ) -> Self {
        Plan {
            name,
            channel,
            customer,
            advisor,
            category,
            handover_to: None,
        }
    }
}

impl Site {
    /// The customer's conversation with Aino alone and one handed over to
    /// adv-anne, then `more`, all starting at `at`.
    async fn customer_and(&self, at: i64, customer: &str, more: Vec<Plan<'_>>) -> Vec<Conv> {
        let mut plans = vec![
            Plan::aino("aino", customer),
            Plan::handover("handover", customer, "adv-anne"),
        ];
        plans.extend(more);
        self.converse(at, &plans).await
    }

    /// Plays conversations starting at `at` (one minute each) through the
    /// messages role and waits until their copies are written.
    async fn converse(&self, at: i64, plans: &[Plan<'_>]) -> Vec<Conv> {
        let batch = self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let batch = format!("{}-{batch}-", self.prefix);
        let mut events = Vec::new();
        let mut out = Vec::new();
        for plan in plans {
            let id = format!("{batch}{}", plan.name);
            let mut c = ChatConversation::new(&id, &self.w.shared).unwrap();
            let ip = plan.customer.is_empty().then_some("198.51.100.7");
            events.push(
                c.started(
                    at,
                    plan.channel,
                    plan.customer,
                    ip,
                    plan.advisor,
                    Desk::CustomerCenter,
                    plan.category,
                )
                .unwrap(),
            );
            let answerer = if plan.advisor.is_empty() {
                (Sender::Bot, "")
            } else {
                (Sender::Advisor, plan.advisor)
            };
            let mut texts = vec![
                format!("Hei, jeg lurer på fastrente ({}). Svar gjerne til {EMAIL}.", plan.name),
                "Du kan se rentene i nettbanken under Lån.".to_owned(),
            ];
            let say = |c: &mut ChatConversation, t: i64, (sender, sender_id): (Sender, &str), text: &str| {
                c.say(Say {
                    at_us: t,
                    sender,
                    sender_id,
                    text,
                })
                .unwrap()
            };
            events.push(say(&mut c, at + SEC, (Sender::Customer, ""), &texts[0]));
            events.push(say(&mut c, at + 2 * SEC, answerer, &texts[1]));
            if let Some(advisor) = plan.handover_to {
                events.push(c.handover(at + 3 * SEC, advisor, Desk::CustomerCenter));
                texts.push("Hei, rådgiver her. Skal vi se på bindingstiden?".to_owned());
                events.push(say(&mut c, at + 4 * SEC, (Sender::Advisor, advisor), &texts[2]));
            }
            let ended = at + 60 * SEC;
            events.push(c.ended(ended));
            out.push(Conv {
                id,
                started: at,
                ended,
                texts,
            });
        }
        self.w.publish(&events).await;
        self.w.wait_written(&batch, out.len(), 120).await;
        out
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    /// A token of the provider's key, valid on the service's clock (the
    /// provider's own tokens hold for five minutes of real time only).
    async fn token(&self, claims: Value) -> String {
        let now = self.w.clock.now_us() / SEC;
        let mut c = json!({"iss": self.p.issuer("a"), "aud": AUDIENCE, "iat": now, "exp": now + 300});
        for (k, v) in claims.as_object().unwrap() {
            c[k] = v.clone();
        }
        let header = json!({"alg": "RS256", "kid": self.p.kid("RSA").await, "typ": "at+jwt"});
        self.p.mint(header, c, "provider").await
    }

    /// The online bank's token now.
    async fn bank(&self) -> String {
        self.token(json!({"sub": BANK, "client_id": BANK})).await
    }

    /// GET with a bearer token: status and body.
    async fn get_bearer(&self, path: &str, token: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// GET with a session cookie (or nothing): status and body.
    async fn get(&self, path: &str, cookie: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts the reason form for `subject` with the session's own CSRF
    /// token: the status, `Location` and body.
    async fn state_reason(
        &self,
        cookie: &str,
        subject: &str,
        fields: &[(&str, &str)],
    ) -> (u16, Option<String>, String) {
        let (_, page) = self.get("/conversations", Some(cookie)).await;
        let csrf = common::csrf_in(&page);
        let mut form = vec![("csrf", csrf.as_str()), ("subject", subject)];
        form.extend_from_slice(fields);
        let r = self
            .http
            .post(self.url("/reason"))
            .header("cookie", cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (r.status().as_u16(), location, r.text().await.unwrap())
    }

    async fn sign_in(&self, user: &str) -> String {
        common::web_session(&self.http, &self.server.base, user, PW).await
    }

    /// The audit entries from `seq` on: (actor, role, action, subject, reason, outcome).
    async fn audit_from(&self, seq: u64) -> Vec<(String, String, String, String, String, String)> {
        let audit = self.w.edges.audit().await.unwrap();
        audit
            .entries(seq, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let e = e.event;
                (e.actor, e.role, e.action, e.subject, e.reason, e.outcome)
            })
            .collect()
    }

    async fn next_seq(&self) -> u64 {
        let audit = self.w.edges.audit().await.unwrap();
        let mut seq = 1;
        loop {
            let page = audit.entries(seq, 1000).await.unwrap();
            match page.last() {
                Some(last) => seq = last.seq + 1,
                None => return seq,
            }
        }
    }

    /// Runs `request`, then checks it left exactly the audit entry `want`
    /// (actor, role, action, subject, reason, outcome).
    async fn audited<T>(&self, want: [&str; 6], request: impl std::future::Future<Output = T>) -> T {
        let seq = self.next_seq().await;
        let out = request.await;
        let got = self.audit_from(seq).await;
        let want = (
            want[0].to_owned(),
            want[1].to_owned(),
            want[2].to_owned(),
            want[3].to_owned(),
            want[4].to_owned(),
            want[5].to_owned(),
        );
        assert_eq!(got, vec![want]);
        out
    }

    async fn sweep_at(&self, at: i64) {
        self.w.clock.set(at);
        self.w.sweep().await;
    }
}

fn ids(listing: &Value) -> Vec<String> {
    listing["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The customer archive: the online bank's token reads exactly the
/// customer's conversations of the last 3 years, each read audited; another
/// customer's, an anonymous one and an older one are refused (audited) with
/// the same 404; people's tokens and sessions never reach it, and the bank's
/// token reaches no staff route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_online_bank_reads_exactly_the_customers_three_years() {
    let Some(s) = site("archive_api").await else { return };
    let kunde = format!("{}-kunde-1", s.prefix);
    let other = format!("{}-kunde-2", s.prefix);
    let t0 = s.w.clock.now_us();
    let other_plan = Plan::advisor(
        "other",
        Channel::SecureMessage,
        &other,
        "adv-bo",
        ServiceCategory::Savings,
    );
    let first = s
        .customer_and(t0, &kunde, vec![other_plan, Plan::aino("anonymous", "")])
        .await;
    let [aino, handover, other_conv, anonymous] = &first[..] else {
        unreachable!()
    };
    let list = format!("/api/v1/customers/{kunde}/conversations");
    let read = |c: &Conv| format!("/api/v1/customers/{kunde}/conversations/{}", c.id);
    let subject_list = format!("customer:{kunde}");
    let subject = |c: &Conv| format!("customer:{kunde} conversation:{}", c.id);

    // A real client-credentials token of the provider, on the real time.
    s.w.clock.set(SystemClock.now_us());
    let real = s.p.token("a", BANK, API).await;
    let (status, body) = s
        .audited(
            [
                "client:nettbank",
                "archive-client",
                "archive.list",
                &subject_list,
                "2 conversations",
                "allowed",
            ],
            s.get_bearer(&list, &real),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ids(&listing), [aino.id.as_str(), handover.id.as_str()]);
    let entry = &listing["conversations"][1];
    assert_eq!(entry["channel"], "aino_chatbot");
    assert_eq!(entry["messages"], 3);
    assert_eq!(entry["started_at_us"], handover.started);
    assert_eq!(entry["ended_at_us"], handover.ended);
    assert_eq!(entry["kept_until_us"], add_years(handover.ended, 3));

    // A year on, a conversation about investments with an advisor.
    let t1 = add_years(t0, 1);
    s.w.clock.set(t1);
    let later = s.converse(t1, &[Plan::invest("invest", &kunde)]).await;
    let invest = &later[0];
    let bank = s.bank().await;
    let (status, body) = s.get_bearer(&list, &bank).await;
    assert_eq!(status, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ids(&listing),
        [aino.id.as_str(), handover.id.as_str(), invest.id.as_str()]
    );

    // One conversation: the customer copy, in full.
    let (status, body) = s
        .audited(
            [
                "client:nettbank",
                "archive-client",
                "archive.read",
                &subject(handover),
                "customer archive",
                "allowed",
            ],
            s.get_bearer(&read(handover), &bank),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let log: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(log["customer_ref"], kunde.as_str());
    assert_eq!(log["advisor_id"], "adv-anne");
    let texts: Vec<&str> = log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, handover.texts);
    assert!(
        log.get("ip_address").is_none() && log.get("redacted").is_none(),
        "{log}"
    );

    // Another customer's conversation, an anonymous one, an unknown one,
    // under this customer: the same 404, each refusal audited with why.
    for (c, why) in [
        (other_conv, "another customer's conversation"),
        (anonymous, "another customer's conversation"),
    ] {
        let (status, body) = s
            .audited(
                [
                    "client:nettbank",
                    "archive-client",
                    "archive.read",
                    &subject(c),
                    why,
                    "refused",
                ],
                s.get_bearer(&read(c), &bank),
            )
            .await;
        assert_eq!(status, 404, "{body}");
        assert!(!body.contains(&c.id) && !body.contains("Hei"), "{body}");
    }
    let ghost = format!("{}-ghost", s.prefix);
    let (status, _) = s
        .audited(
            [
                "client:nettbank",
                "archive-client",
                "archive.read",
                &format!("customer:{kunde} conversation:{ghost}"),
                "unknown conversation",
                "refused",
            ],
            s.get_bearer(&format!("{list}/{ghost}"), &bank),
        )
        .await;
    assert_eq!(status, 404);
    // The other customer sees their own, and only it.
    let (_, body) = s
        .get_bearer(&format!("/api/v1/customers/{other}/conversations"), &bank)
        .await;
    assert_eq!(ids(&serde_json::from_str(&body).unwrap()), [other_conv.id.as_str()]);

    // People never reach the archive: a staff token (403, naming the
    // person), a session (403), nothing at all (401, nobody to name).
    let anne = s
        .token(json!({"sub": "adv-anne", "client_id": "review-ui", "roles": ["advisor"]}))
        .await;
    let (status, _) = s
        .audited(
            [
                "oidc:adv-anne",
                "advisor",
                "archive.list",
                &subject_list,
                "not_archive_client",
                "refused",
            ],
            s.get_bearer(&list, &anne),
        )
        .await;
    assert_eq!(status, 403);
    let cato = s.sign_in("co-cato").await;
    let (status, body) = s
        .audited(
            [
                "co-cato",
                "compliance",
                "archive.read",
                &subject(aino),
                "a session reaches no archive route",
                "refused",
            ],
            s.get(&read(aino), Some(&cato)),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = s.get(&list, None).await;
    assert_eq!(status, 401);
    // A token of the bank that names an opptak role is no archive client's.
    let promoted = s
        .token(json!({"sub": BANK, "client_id": BANK, "roles": ["compliance"]}))
        .await;
    let (status, _) = s
        .audited(
            [
                "-",
                "-",
                "archive.list",
                &subject_list,
                "role_on_archive_client",
                "refused",
            ],
            s.get_bearer(&list, &promoted),
        )
        .await;
    assert_eq!(status, 403);

    // The bank's token reaches no staff route.
    for path in [
        "/api/v1/queue".to_owned(),
        format!("/api/v1/calls/{}", handover.id),
        "/api/v1/dashboard".to_owned(),
        "/api/v1/qa/report".to_owned(),
    ] {
        let (status, body) = s
            .audited(
                ["-", "-", "token", "api", "archive_client", "refused"],
                s.get_bearer(&path, &bank),
            )
            .await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    // Pages take sessions only: a token there is nobody.
    let (status, _) = s.get_bearer(&format!("/conversations/{}", aino.id), &bank).await;
    assert_eq!(status, 401);

    // Time travel. One second before 3 years from its start the first
    // conversation is shown (the sweeper deleted nothing); from then on it
    // is not, and 3 years after its end the sweeper deletes its customer
    // copy and shreds the key.
    s.sweep_at(add_years(aino.started, 3) - SEC).await;
    let bank = s.bank().await;
    let (_, body) = s.get_bearer(&list, &bank).await;
    let listing: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ids(&listing),
        [aino.id.as_str(), handover.id.as_str(), invest.id.as_str()]
    );
    assert_eq!(
        listing["since_us"],
        aino.started - SEC + 1,
        "the first instant within 3 years"
    );
    let (status, _) = s.get_bearer(&read(aino), &bank).await;
    assert_eq!(status, 200);

    s.sweep_at(add_years(aino.started, 3)).await;
    let bank = s.bank().await;
    let (_, body) = s.get_bearer(&list, &bank).await;
    assert_eq!(ids(&serde_json::from_str(&body).unwrap()), [invest.id.as_str()]);
    let (status, _) = s
        .audited(
            [
                "client:nettbank",
                "archive-client",
                "archive.read",
                &subject(aino),
                "started more than 3 years ago",
                "refused",
            ],
            s.get_bearer(&read(aino), &bank),
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        s.w.read(&aino.id, "chat-customer").await.is_ok(),
        "kept until 3 years after its end"
    );

    s.sweep_at(add_years(aino.ended, 3)).await;
    assert!(
        s.w.read(&aino.id, "chat-customer").await.is_err(),
        "deleted at its expiry"
    );
    assert!(s.w.read(&invest.id, "chat-customer").await.is_ok());
    let bank = s.bank().await;
    let (_, body) = s.get_bearer(&list, &bank).await;
    assert_eq!(ids(&serde_json::from_str(&body).unwrap()), [invest.id.as_str()]);
    let (status, _) = s.get_bearer(&read(invest), &bank).await;
    assert_eq!(status, 200);

    // Once its customer copy is gone, the newest is gone from the archive
    // too (its advisor and archive copies stay 5 years, for the bank).
    s.sweep_at(add_years(invest.ended, 3)).await;
    let bank = s.bank().await;
    let (_, body) = s.get_bearer(&list, &bank).await;
    assert!(ids(&serde_json::from_str(&body).unwrap()).is_empty(), "{body}");
    let (status, _) = s.get_bearer(&read(invest), &bank).await;
    assert_eq!(status, 404);
    assert!(s.w.read(&invest.id, "chat-advisor").await.is_ok());
    s.server.stop().await;
}

/// The review pages: compliance and QA read conversations with a stated
/// reason (the full copy when one is kept, else the redacted analysis copy,
/// the page saying which and until when), the advisor the one handed over
/// to them; the others are refused; every read and refusal audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_read_conversations_as_they_read_calls() {
    let Some(s) = site("conv_pages").await else { return };
    let kunde = format!("{}-kunde", s.prefix);
    let t0 = s.w.clock.now_us();
    let convs = s.customer_and(t0, &kunde, vec![Plan::invest("invest", &kunde)]).await;
    let [aino, handover, invest] = &convs[..] else {
        unreachable!()
    };
    let page = |c: &Conv| format!("/conversations/{}", c.id);
    let subject = |c: &Conv| format!("conversation:{}", c.id);
    // The reason is stated in a form and kept for the session; the audit
    // log has "category · case · text".
    const WHY: &str = "Klage fra kunden · FKN-2026-0311 · the customer complains about the chat";
    const QA_WHY: &str = "Kvalitetskontroll · sample check of the advisor chat";
    let complaint = [
        ("category", "complaint"),
        ("case_ref", "FKN-2026-0311"),
        ("text", "the customer complains about the chat"),
    ];
    let sample = [
        ("category", "quality_control"),
        ("case_ref", ""),
        ("text", "sample check of the advisor chat"),
    ];
    let cato = s.sign_in("co-cato").await;
    let kari = s.sign_in("qa-kari").await;
    let anne = s.sign_in("adv-anne").await;
    let bo = s.sign_in("adv-bo").await;
    let lise = s.sign_in("lead-lise").await;
    let astrid = s.sign_in("aud-astrid").await;

    // Compliance: a reason first, in a form (nothing read, nothing logged);
    // too short a text is shown again with the input kept, logged as a
    // failed form; the reason never goes into a URL.
    let before = s.next_seq().await;
    let (status, body) = s.get(&page(handover), Some(&cato)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("action=\"/reason\"") && !body.contains(EMAIL), "{body}");
    assert_eq!(s.next_seq().await, before, "showing the form logs nothing");
    let (status, _, body) = s
        .audited(
            [
                "co-cato",
                "compliance",
                "read.reason",
                &subject(handover),
                "test",
                "failed",
            ],
            s.state_reason(
                &cato,
                &subject(handover),
                &[
                    ("category", "complaint"),
                    ("case_ref", "FKN-2026-0311"),
                    ("text", "test"),
                ],
            ),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body.contains("aria-invalid=\"true\"") && body.contains(">test<"),
        "{body}"
    );
    let (status, location, _) = s.state_reason(&cato, &subject(handover), &complaint).await;
    assert_eq!((status, location), (303, Some(page(handover))));
    let (status, body) = s
        .audited(
            [
                "co-cato",
                "compliance",
                "conversation.read",
                &subject(handover),
                WHY,
                "allowed",
            ],
            s.get(&page(handover), Some(&cato)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The advisor copy, in full, and until when it is kept (Oslo time).
    assert!(
        body.contains("rådgiverkopien") && !body.contains("chat-advisor"),
        "{body}"
    );
    assert!(body.contains(&oslo(add_years(handover.ended, 5))), "{body}");
    assert!(body.contains(EMAIL) && body.contains("Hei, rådgiver her."), "{body}");
    // A conversation with Aino alone has no advisor copy: the analysis copy,
    // redacted, kept one year.
    // Each conversation needs its own reason.
    let (status, body) = s.get(&page(aino), Some(&cato)).await;
    assert!(status == 200 && body.contains("action=\"/reason\""), "{body}");
    assert_eq!(s.state_reason(&cato, &subject(aino), &complaint).await.0, 303);
    let (status, body) = s.get(&page(aino), Some(&cato)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("analysekopien"), "{body}");
    assert!(body.contains(&oslo(add_years(aino.ended, 1))), "{body}");
    assert!(!body.contains(EMAIL), "the analysis copy is redacted: {body}");
    assert!(body.contains("fastrente"), "{body}");
    // In English on request.
    assert_eq!(s.state_reason(&cato, &subject(invest), &complaint).await.0, 303);
    let (_, body) = s.get(&page(invest), Some(&format!("{cato}; opptak_lang=en"))).await;
    assert!(
        body.contains("the advisor copy") && body.contains("Kept until"),
        "{body}"
    );

    // QA: a reason too (its own session's), and the same copies.
    let (status, body) = s.get(&page(invest), Some(&kari)).await;
    assert!(status == 200 && body.contains("action=\"/reason\""), "{body}");
    assert_eq!(s.state_reason(&kari, &subject(invest), &sample).await.0, 303);
    let (status, body) = s
        .audited(
            [
                "qa-kari",
                "qa",
                "conversation.read",
                &subject(invest),
                QA_WHY,
                "allowed",
            ],
            s.get(&page(invest), Some(&kari)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rådgiverkopien"), "{body}");

    // The advisor the conversation was handed over to reads it, without a
    // reason; another advisor does not, nor anyone else.
    let (status, body) = s
        .audited(
            [
                "adv-anne",
                "advisor",
                "conversation.read",
                &subject(handover),
                "review",
                "allowed",
            ],
            s.get(&page(handover), Some(&anne)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rådgiverkopien") && body.contains(EMAIL), "{body}");
    for (who, role, cookie, c, status) in [
        ("adv-anne", "advisor", &anne, invest, 403),
        ("adv-anne", "advisor", &anne, aino, 403),
        ("adv-bo", "advisor", &bo, handover, 403),
        ("lead-lise", "team-lead", &lise, handover, 403),
        ("aud-astrid", "auditor", &astrid, handover, 403),
    ] {
        let (got, body) = s
            .audited(
                [who, role, "conversation.read", &subject(c), "", "refused"],
                s.get(&page(c), Some(cookie)),
            )
            .await;
        assert_eq!(got, status, "{who} on {}: {body}", c.id);
        assert!(!body.contains("fastrente"), "{body}");
    }
    let (status, _) = s
        .audited(
            [
                "aud-astrid",
                "auditor",
                "conversation.read",
                &subject(invest),
                "",
                "refused",
            ],
            s.get(&page(invest), Some(&astrid)),
        )
        .await;
    assert_eq!(status, 403);
    let ghost = format!("{}-ghost", s.prefix);
    let (status, _) = s
        .audited(
            [
                "co-cato",
                "compliance",
                "conversation.read",
                &format!("conversation:{ghost}"),
                "",
                "refused",
            ],
            s.get(&format!("/conversations/{ghost}"), Some(&cato)),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s.get(&page(handover), None).await;
    assert_eq!(status, 401);

    // The list, linked from the menu: all conversations for compliance and
    // QA (by channel), the advisor's own, none for the others.
    let (status, body) = s.get("/conversations", Some(&cato)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("href=\"/conversations\""), "in the menu: {body}");
    for c in [aino, handover, invest] {
        assert!(body.contains(&format!("href=\"/conversations/{}\"", c.id)), "{body}");
    }
    let (_, body) = s.get("/conversations?channel=advisor_chat", Some(&kari)).await;
    assert!(
        body.contains(&invest.id) && !body.contains(&aino.id) && !body.contains(&handover.id),
        "{body}"
    );
    let (_, body) = s.get("/conversations", Some(&anne)).await;
    assert!(
        body.contains(&handover.id) && !body.contains(&invest.id) && !body.contains(&aino.id),
        "{body}"
    );
    for (who, role, cookie) in [("lead-lise", "team-lead", &lise), ("aud-astrid", "auditor", &astrid)] {
        let (status, body) = s
            .audited(
                [who, role, "conversations.list", "conversations", "", "refused"],
                s.get("/conversations", Some(cookie)),
            )
            .await;
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains("href=\"/conversations\""), "not in their menu: {body}");
    }

    // A year after the end the analysis copies are gone: QA's access ends
    // with them; compliance reads the advisor copy still, and nothing of a
    // conversation with Aino alone (its customer copy is the customer's).
    // (Sessions last 8 hours: sign in again.)
    s.sweep_at(add_years(aino.ended, 1)).await;
    let (cato, kari) = (s.sign_in("co-cato").await, s.sign_in("qa-kari").await);
    let (status, _) = s
        .audited(
            ["qa-kari", "qa", "conversation.read", &subject(invest), "", "refused"],
            s.get(&page(invest), Some(&kari)),
        )
        .await;
    assert_eq!(status, 403);
    // A new session states its reasons again.
    let (status, body) = s.get(&page(handover), Some(&cato)).await;
    assert!(status == 200 && body.contains("action=\"/reason\""), "{body}");
    for c in [handover, aino, invest] {
        assert_eq!(s.state_reason(&cato, &subject(c), &complaint).await.0, 303);
    }
    let (status, body) = s.get(&page(handover), Some(&cato)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rådgiverkopien"), "{body}");
    let (status, _) = s.get(&page(aino), Some(&cato)).await;
    assert_eq!(status, 410);
    // Without the advisor copy, compliance reads the securities-act copy in
    // the WORM archive.
    let invest_id = opptak_domain::model::CallId::parse(&invest.id).unwrap();
    s.w.edges
        .vault()
        .shred(&invest_id, "chat-advisor-5y", "test: the advisor copy gone", "test")
        .await
        .unwrap();
    let (status, body) = s.get(&page(invest), Some(&cato)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("arkivkopien"), "{body}");
    assert!(body.contains(EMAIL), "{body}");
    s.server.stop().await;
}

/// A time as the Norwegian pages show it (Oslo time, `07.12.2026 10:41`).
fn oslo(us: i64) -> String {
    let (y, m, d, h, mi, _) = oslo_civil(us);
    format!("{d:02}.{m:02}.{y} {h:02}:{mi:02}")
}
