// The storefront's two ways to the edge, behind one interface: JSON over fetch (the routes the
// transcoder serves from the protos' google.api.http bindings), and the gRPC methods themselves
// over Connect or gRPC-Web (connect-web; Envoy's connect_grpc_bridge and grpc_web filters turn
// them into gRPC at the edge, before auth). Both fail with an `EdgeError`: the gRPC code, the
// message, and what the page needs to explain it.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthorityService } from "./gen/platform/authority_pb";
import { CatalogService } from "./gen/platform/catalog_pb";

export interface Item {
  id: string;
  title: string;
  price: bigint;
  sold: boolean;
  sellerName: string;
}

export interface Page {
  items: Item[];
  nextPageToken: string;
}

export type Protocol = "json" | "connect" | "grpc-web";

export interface Api {
  readonly protocol: Protocol;
  signup(name: string): Promise<string>;
  signin(name: string): Promise<string>;
  listItems(pageSize: number, pageToken: string): Promise<Page>;
  getItem(id: string): Promise<Item>;
  purchaseItem(id: string, token: string): Promise<Item>;
}

/** A refusal or failure: `code` is gRPC's (google.rpc.Code), whatever the protocol. */
export class EdgeError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly httpStatus: number | undefined,
    readonly retryAfterSeconds: number | undefined,
  ) {
    super(message);
  }
}

export function jsonApi(base: string): Api {
  async function call(method: string, path: string, body?: unknown, token?: string) {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers["authorization"] = `Bearer ${token}`;
    const response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: any = {};
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { message: text };
    }
    if (!response.ok) {
      const retry = response.headers.get("retry-after");
      throw new EdgeError(
        typeof parsed.code === "number" ? parsed.code : Code.Unknown,
        parsed.message ?? response.statusText,
        response.status,
        retry === null ? undefined : Number(retry),
      );
    }
    return parsed;
  }
  const item = (json: any): Item => ({
    id: json.id ?? "",
    title: json.title ?? "",
    price: BigInt(json.price ?? 0),
    sold: json.sold === true,
    sellerName: json.customer_name ?? "",
  });
  return {
    protocol: "json",
    async signup(name) {
      const body = await call("POST", "/auth/signup", { name });
      return body.customer?.id ?? "";
    },
    async signin(name) {
      return (await call("POST", "/auth/signin", { name })).access_token;
    },
    async listItems(pageSize, pageToken) {
      const query = new URLSearchParams({ page_size: String(pageSize) });
      if (pageToken) query.set("page_token", pageToken);
      const body = await call("GET", `/catalog/items?${query}`);
      return { items: (body.items ?? []).map(item), nextPageToken: body.next_page_token ?? "" };
    },
    async getItem(id) {
      return item((await call("GET", `/catalog/items/${encodeURIComponent(id)}`)).item);
    },
    async purchaseItem(id, token) {
      const path = `/catalog/items/${encodeURIComponent(id)}:purchase`;
      return item((await call("POST", path, undefined, token)).item);
    },
  };
}

export function rpcApi(base: string, protocol: "connect" | "grpc-web"): Api {
  let bearer = "";
  const authorize: Interceptor = (next) => async (request) => {
    if (bearer) request.header.set("authorization", `Bearer ${bearer}`);
    return next(request);
  };
  const options = { baseUrl: base, useBinaryFormat: true, interceptors: [authorize] };
  const transport =
    protocol === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
  const authority = createClient(AuthorityService, transport);
  const catalog = createClient(CatalogService, transport);
  async function call<T>(token: string, send: () => Promise<T>): Promise<T> {
    bearer = token;
    try {
      return await send();
    } catch (error) {
      const failure = ConnectError.from(error);
      const retry = failure.metadata.get("retry-after");
      throw new EdgeError(
        failure.code,
        failure.rawMessage,
        undefined,
        retry === null ? undefined : Number(retry),
      );
    } finally {
      bearer = "";
    }
  }
  const item = (message: {
    id: string;
    title: string;
    price: bigint;
    sold: boolean;
    customerName: string;
  }): Item => ({
    id: message.id,
    title: message.title,
    price: message.price,
    sold: message.sold,
    sellerName: message.customerName,
  });
  return {
    protocol,
    async signup(name) {
      const response = await call("", () => authority.signup({ name }));
      return response.customer?.id ?? "";
    },
    async signin(name) {
      return (await call("", () => authority.signin({ name }))).accessToken;
    },
    async listItems(pageSize, pageToken) {
      const response = await call("", () => catalog.listItems({ pageSize, pageToken }));
      return { items: response.items.map(item), nextPageToken: response.nextPageToken };
    },
    async getItem(id) {
      const response = await call("", () => catalog.getItem({ id }));
      if (!response.item) throw new EdgeError(Code.NotFound, "no such item", undefined, undefined);
      return item(response.item);
    },
    async purchaseItem(id, token) {
      const response = await call(token, () => catalog.purchaseItem({ id }));
      if (!response.item) throw new EdgeError(Code.Internal, "no item in the answer", undefined, undefined);
      return item(response.item);
    },
  };
}

/** What a refusal means for the person at the page. */
export function explain(error: EdgeError): string {
  switch (error.code) {
    case Code.Unauthenticated:
      return "Sign in first: this needs an account (401 Unauthenticated).";
    case Code.PermissionDenied:
      return `Not allowed: ${error.message} (403 Permission denied).`;
    case Code.ResourceExhausted:
      return error.retryAfterSeconds === undefined
        ? `Too many requests: slow down (429). ${error.message}`
        : `Too many requests: try again in ${error.retryAfterSeconds} s (429).`;
    case Code.NotFound:
      return `Not found: ${error.message}.`;
    case Code.FailedPrecondition:
      return `Cannot do that now: ${error.message}.`;
    case Code.Unavailable:
      return `The shop is unavailable right now: ${error.message}.`;
    default:
      return `${Code[error.code] ?? error.code}: ${error.message}`;
  }
}
