// Drives the web console in headless Chromium, as two people, against a running firebell
// (started by tests/console_browser.rs, which then checks the store). Steps print as they pass;
// any failure exits non-zero with the step, and a screenshot of the page at that moment.
//
// Env: BASE_URL (the app), ARTIFACTS (folder for screenshots), CHROMIUM (the browser binary),
// QUEUE (the Redis list the `cache` runbook reads; the Rust side filled it to a warn level).

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const BASE = process.env.BASE_URL;
const ARTIFACTS = process.env.ARTIFACTS;
const QUEUE = process.env.QUEUE;
const WAIT = 20_000;
const TOKENS = { alice: process.env.ALICE_TOKEN, bob: process.env.BOB_TOKEN };
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

let current = "start";
const pages = [];
const problems = [];

function step(name) {
  current = name;
  console.log(`step: ${name}`);
}

async function person(name, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (error) => problems.push(`${name}: script error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`${name}: console error: ${message.text()}`);
  });
  pages.push([name, page]);
  // Signed in with their own token ([console] people), so approvals know who is who.
  await page.goto(BASE + "/login");
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Console token").fill(TOKENS[name]);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: `console:${name}`, exact: true }).waitFor();
  return page;
}

/// The bot's message (a list item) that contains `text`, in the channel pane or the thread.
function message(page, text, pane = "#messages") {
  return page.locator(`${pane} li.message.bot`, { hasText: text }).last();
}

async function type(page, text, input = "#input") {
  await page.locator(input).fill(text);
  await page.locator(input).press("Enter");
}

async function shot(page, name) {
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

try {
  step("alice opens the console and names herself");
  const alice = await person("alice", { width: 1280, height: 900 });

  step("keyboard: Tab completes the command and the topic, up-arrow recalls the last command");
  await alice.getByRole("link", { name: "#ops" }).click();
  await alice.locator("#input").fill("/diag");
  await alice.locator("#input").press("Tab");
  if ((await alice.locator("#input").inputValue()) !== "/diagnose ") throw new Error("Tab did not complete /diagnose");
  await alice.locator("#input").pressSequentially("cac");
  await alice.locator("#input").press("Tab");
  if ((await alice.locator("#input").inputValue()) !== "/diagnose cache ")
    throw new Error(`Tab did not complete the topic: '${await alice.locator("#input").inputValue()}'`);

  step("/diagnose cache streams each verdict from the real Redis");
  await alice.locator("#input").pressSequentially(`queue=${QUEUE}`);
  await alice.locator("#input").press("Enter");
  const diagnosis = message(alice, "diagnose cache");
  await diagnosis.filter({ hasText: "WARN" }).waitFor();
  await diagnosis.filter({ hasText: `LLEN ${QUEUE} = 7` }).waitFor();
  await diagnosis.filter({ hasText: "redis reachable" }).filter({ hasText: "PONG" }).waitFor();
  await alice.locator("#input").press("ArrowUp");
  if ((await alice.locator("#input").inputValue()) !== `/diagnose cache queue=${QUEUE}`)
    throw new Error("up-arrow did not recall the last command");
  await alice.locator("#input").fill("");
  await shot(alice, "chat-diagnosis");

  step("a bad argument gets a reply that says what is valid, and nothing runs");
  await type(alice, "/diagnose cache queue=BAD;rm");
  await alice.locator("#messages li.ephemeral", { hasText: "queue" }).waitFor();

  step("alice requests the suggested remediation; she may not approve it herself");
  await diagnosis.getByRole("button", { name: /trim-queue/ }).click();
  const request = alice.locator("li.message", { hasText: "trim-queue" }).filter({ has: alice.getByRole("button", { name: "Approve" }) }).last();
  await request.waitFor();
  await request.getByRole("button", { name: "Approve" }).click();
  await alice.locator("li.ephemeral", { hasText: "approve" }).first().waitFor();
  await shot(alice, "chat-remediation-requested");

  step("bob, on a phone, approves it, and it runs");
  const bob = await person("bob", { width: 390, height: 844 });
  await bob.getByRole("link", { name: "#ops" }).click();
  const bobsRequest = bob
    .locator("#messages li.message.bot", { hasText: "trim-queue" })
    .filter({ has: bob.getByRole("button", { name: "Approve" }) })
    .last();
  await bobsRequest.getByRole("button", { name: "Approve" }).click();
  await alice.locator("li.message", { hasText: "Succeeded" }).last().waitFor();
  await bob.locator("li.message", { hasText: "Succeeded" }).last().waitFor();
  await shot(bob, "chat-phone-approved");

  step("alice declares an incident; its notification opens in #incidents");
  await type(alice, "/incident declare Checkout is down sev=critical impact=\"Nobody can pay\"");
  await alice.getByRole("link", { name: "#incidents" }).click();
  const notification = message(alice, "Checkout is down");
  await notification.filter({ hasText: "CRITICAL" }).waitFor();

  step("bob acknowledges it with the button");
  await bob.getByRole("link", { name: "#incidents" }).click();
  await message(bob, "Checkout is down").getByRole("button", { name: "Acknowledge" }).click();
  await message(alice, "Checkout is down", "#messages").getByRole("button", { name: /repl/ }).click();
  await alice.locator("#thread-messages li.message", { hasText: "acknowledged" }).first().waitFor();

  step("in the thread, /diagnose runs against the incident");
  await type(alice, `/diagnose cache queue=${QUEUE}`, "#thread-input");
  await alice.locator("#thread-messages li.message", { hasText: "diagnose cache: WARN" }).waitFor();

  step("alice notes what she found and gives bob a follow-up due in 2 s; bob is reminded in the thread");
  await type(alice, "/incident note the payment client was deployed at 09:12", "#thread-input");
  await alice.locator("li.ephemeral", { hasText: "Noted on incident" }).first().waitFor();
  await type(alice, '/incident followup "Canary the payment client" owner=console:bob due=2s', "#thread-input");
  const followup = alice.locator("#thread-messages li.message", { hasText: "Follow-up #1" }).first();
  await followup.waitFor();
  await followup.getByRole("button", { name: "Done" }).waitFor();
  await alice.locator("#thread-messages li.message", { hasText: "⏰" }).filter({ hasText: "Canary the payment client" }).first().waitFor();

  step("alice resolves it with the form");
  await message(alice, "Checkout is down", "#thread-messages").getByRole("button", { name: "Resolve" }).first().click();
  await alice.locator("#form-dialog").waitFor();
  await alice.getByLabel("Root cause").fill("A bad deploy of the payment client");
  await alice.getByLabel("Fix (optional)").fill("Rolled back to v41");
  await alice.getByLabel("Prevention (optional)").fill("Canary the payment client");
  await shot(alice, "chat-resolve-form");
  await alice.locator("#form-submit").click();
  await alice.locator("#thread-messages li.message", { hasText: "RESOLVED" }).first().waitFor();
  await shot(alice, "chat-incident-thread");

  step("the post-incident checklist posts in the thread; alice ticks an item and the message says so");
  const checklist = alice.locator("#thread-messages li.message", { hasText: "Checklist: post-incident" }).first();
  await checklist.filter({ hasText: "0/2 done" }).waitFor();
  await checklist.getByRole("button", { name: "Done: Service restored" }).click();
  await alice.locator("#thread-messages li.message", { hasText: "Checklist: post-incident (1/2 done)" }).first().waitFor();
  await shot(alice, "chat-checklist");

  step("the incidents page lists it resolved, with who acknowledged");
  await alice.getByRole("link", { name: "Incidents", exact: true }).click();
  const row = alice.locator("table.incidents tr", { hasText: "Checkout is down" });
  await row.filter({ hasText: "resolved" }).filter({ hasText: "console:bob" }).waitFor();
  await shot(alice, "incidents");

  step("the incident page shows the timeline, the checks and the resolution summary");
  await row.getByRole("link", { name: "Checkout is down" }).click();
  await alice.locator("#summary", { hasText: "A bad deploy of the payment client" }).waitFor();
  await alice.locator("table.checks tr", { hasText: "queue depth" }).filter({ hasText: "WARN" }).waitFor();
  await alice.locator(".timeline li", { hasText: "acknowledged" }).first().waitFor();

  step("and the note, the follow-up, the checklist's state and the post-mortem draft");
  await alice.locator("ul.notes li", { hasText: "the payment client was deployed at 09:12" }).waitFor();
  await alice.locator("table.followups tr", { hasText: "Canary the payment client" }).filter({ hasText: "console:bob" }).waitFor();
  await alice.locator("section.checklist", { hasText: "post-incident (1/2 done)" }).waitFor();
  await alice.locator("details summary", { hasText: "Show the Markdown" }).click();
  await alice.locator("#postmortem", { hasText: "Time to resolve (TTR)" }).waitFor();
  await alice.locator("#postmortem", { hasText: "[ ] Canary the payment client" }).waitFor();
  await shot(alice, "incident");
  await bob.goto(alice.url());
  await shot(bob, "incident-phone");

  step("beyond loopback the console asks for its token first");
  const carolContext = await browser.newContext({ viewport: { width: 1024, height: 700 } });
  const carol = await carolContext.newPage();
  carol.setDefaultTimeout(WAIT);
  pages.push(["carol", carol]);
  await carol.goto(process.env.GUARDED_URL + "/");
  await carol.getByLabel("Console token").waitFor();
  await carol.getByLabel("Console token").fill("not-the-token");
  await carol.getByRole("button", { name: "Sign in" }).click();
  await carol.getByText("That is not the console token.").waitFor();
  await shot(carol, "login");
  await carol.getByLabel("Console token").fill(process.env.CONSOLE_TOKEN);
  await carol.getByRole("button", { name: "Sign in" }).click();
  await carol.locator("#name-input").fill("carol");
  await carol.getByRole("button", { name: "Start" }).click();
  await type(carol, "/incident list");
  await carol.locator("li.ephemeral", { hasText: "No open incidents" }).waitFor();

  if (problems.length) throw new Error(problems.join("\n"));
  console.log("passed");
  await browser.close();
} catch (error) {
  console.error(`failed at step "${current}": ${error.message}`);
  for (const [name, page] of pages) {
    await page.screenshot({ path: `${ARTIFACTS}/failure-${name}.png`, fullPage: true }).catch(() => {});
  }
  if (problems.length) console.error(problems.join("\n"));
  await browser.close();
  process.exit(1);
}
