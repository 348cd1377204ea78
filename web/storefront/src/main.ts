// The storefront: sign up or in, page through the items, open one, buy it, and see any
// refusal explained. The same screen runs over JSON (fetch) or over the gRPC methods (Connect
// or gRPC-Web), chosen with the tabs; `?protocol=` and `?edge=` preselect them.
import { type Api, EdgeError, explain, jsonApi, type Protocol, rpcApi } from "./api";

const PAGE_SIZE = 5;
const params = new URLSearchParams(location.search);
const edge = params.get("edge") ?? "http://localhost:8080";

const state = {
  api: apiFor((params.get("protocol") as Protocol) ?? "json"),
  token: sessionStorage.getItem("token") ?? "",
  user: sessionStorage.getItem("user") ?? "",
  pages: [""] as string[],
  page: 0,
};

function apiFor(protocol: Protocol): Api {
  return protocol === "json" ? jsonApi(edge) : rpcApi(edge, protocol);
}

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`no #${id}`);
  return found as T;
}

/** Shows the outcome of the last action: done, or refused and why. */
function report(kind: "ok" | "refused", text: string) {
  const box = element("status");
  box.className = kind;
  box.textContent = text;
  box.dataset.kind = kind;
}

async function attempt(what: string, action: () => Promise<void>) {
  const started = performance.now();
  try {
    await action();
    report("ok", `${what}: done in ${Math.round(performance.now() - started)} ms over ${state.api.protocol}.`);
  } catch (error) {
    const failure =
      error instanceof EdgeError ? error : new EdgeError(2, String(error), undefined, undefined);
    const refusal = element("status");
    refusal.dataset.code = String(failure.code);
    report("refused", `${what}: ${explain(failure)}`);
  }
}

function showUser() {
  element("user").textContent = state.user ? `Signed in as ${state.user}` : "Not signed in";
}

function price(yen: bigint): string {
  return `¥${yen.toLocaleString("en-US")}`;
}

async function showPage() {
  const page = await state.api.listItems(PAGE_SIZE, state.pages[state.page]);
  const list = element<HTMLUListElement>("items");
  list.replaceChildren(
    ...page.items.map((item) => {
      const row = document.createElement("li");
      const open = document.createElement("button");
      open.className = "item";
      open.dataset.id = item.id;
      open.textContent = `${item.title} — ${price(item.price)}${item.sold ? " (sold)" : ""}`;
      open.addEventListener("click", () => attempt("Open item", () => showItem(item.id)));
      row.append(open);
      return row;
    }),
  );
  state.pages.length = state.page + 1;
  if (page.nextPageToken) state.pages.push(page.nextPageToken);
  element<HTMLButtonElement>("next").disabled = !page.nextPageToken;
  element<HTMLButtonElement>("previous").disabled = state.page === 0;
  element("page").textContent = `Page ${state.page + 1}`;
}

async function showItem(id: string) {
  const item = await state.api.getItem(id);
  const detail = element("detail");
  detail.hidden = false;
  detail.dataset.id = item.id;
  element("detail-title").textContent = item.title;
  element("detail-price").textContent = price(item.price);
  element("detail-seller").textContent = `Sold by ${item.sellerName || "someone"}`;
  element("detail-state").textContent = item.sold ? "Sold" : "For sale";
  element<HTMLButtonElement>("buy").disabled = item.sold;
}

function choose(protocol: Protocol) {
  state.api = apiFor(protocol);
  for (const tab of document.querySelectorAll<HTMLButtonElement>("[data-protocol]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.protocol === protocol));
  }
  element("protocol").textContent =
    protocol === "json" ? "JSON over fetch" : protocol === "connect" ? "Connect (binary)" : "gRPC-Web (binary)";
  state.pages = [""];
  state.page = 0;
  void attempt("List items", showPage);
}

function signedIn(name: string, token: string) {
  state.user = name;
  state.token = token;
  sessionStorage.setItem("user", name);
  sessionStorage.setItem("token", token);
  showUser();
}

function wire() {
  for (const tab of document.querySelectorAll<HTMLButtonElement>("[data-protocol]")) {
    tab.addEventListener("click", () => choose(tab.dataset.protocol as Protocol));
  }
  const name = element<HTMLInputElement>("name");
  element("signup").addEventListener("click", () =>
    attempt("Sign up", async () => {
      await state.api.signup(name.value);
      signedIn(name.value, await state.api.signin(name.value));
    }),
  );
  element("signin").addEventListener("click", () =>
    attempt("Sign in", async () => signedIn(name.value, await state.api.signin(name.value))),
  );
  element("signout").addEventListener("click", () => {
    signedIn("", "");
    report("ok", "Signed out.");
  });
  element("next").addEventListener("click", () => {
    state.page += 1;
    void attempt("Next page", showPage);
  });
  element("previous").addEventListener("click", () => {
    state.page -= 1;
    void attempt("Previous page", showPage);
  });
  element("buy").addEventListener("click", () =>
    attempt("Buy", async () => {
      const id = element("detail").dataset.id ?? "";
      await state.api.purchaseItem(id, state.token);
      await showItem(id);
      await showPage();
    }),
  );
  showUser();
  choose(state.api.protocol);
}

wire();
