// ciba_op.mjs — a real, independent CIBA provider for tests: node-oidc-provider
// (a certified OpenID Connect server) with features.ciba in poll mode, and a
// small control server the test drives approvals through.
//
//   node tests/js/ciba_op.mjs        prints {"issuer": URL, "control": URL} once listening
//
// Provider: clients "sanctum" (client_secret_post) and "sanctum-basic"
// (client_secret_basic), both with the secret from $CIBA_OP_SECRET (default
// "op-secret"), and with $CIBA_OP_JWT_JWK (a public Ed25519 JWK) "sanctum-jwt"
// (private_key_jwt with that key); accounts: the login_hint names one of $CIBA_OP_USERS
// (comma-separated, default "alice,bob"), else unknown_user_id. Binding
// messages: Auth0's character set (letters, digits, space, + - _ . , : #),
// at most 64 characters, else invalid_binding_message.
// Control (JSON): GET /requests -> [{user, binding_message, id, client}];
// GET /auths -> [{path, basic}] (every request to the provider: was it
// authenticated with an HTTP Basic header);
// POST /approve/USER, POST /deny/USER -> the user's latest request decided
// through provider.backchannelResult (a Grant with openid, or AccessDenied).
import http from "node:http";
import Provider, { errors } from "oidc-provider";

const users = new Set((process.env.CIBA_OP_USERS || "alice,bob").split(","));
const secret = process.env.CIBA_OP_SECRET || "op-secret";
const requests = []; // {user, binding_message, request}

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

const opServer = http.createServer();
const port = await listen(opServer);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: "sanctum",
    client_secret: secret,
    grant_types: ["urn:openid:params:grant-type:ciba"],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: "client_secret_post",
    backchannel_token_delivery_mode: "poll",
  }, {
    client_id: "sanctum-basic",
    client_secret: secret,
    grant_types: ["urn:openid:params:grant-type:ciba"],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: "client_secret_basic",
    backchannel_token_delivery_mode: "poll",
  }, ...(process.env.CIBA_OP_JWT_JWK ? [{
    client_id: "sanctum-jwt",
    grant_types: ["urn:openid:params:grant-type:ciba"],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: "private_key_jwt",
    jwks: { keys: [JSON.parse(process.env.CIBA_OP_JWT_JWK)] },
    backchannel_token_delivery_mode: "poll",
  }] : [])],
  findAccount: async (ctx, id) => ({ accountId: id, async claims() { return { sub: id }; } }),
  features: {
    devInteractions: { enabled: false },
    ciba: {
      enabled: true,
      deliveryModes: ["poll"],
      async processLoginHint(ctx, loginHint) {
        if (!users.has(loginHint)) throw new errors.UnknownUserId("no such user");
        return loginHint;
      },
      async validateBindingMessage(ctx, message) {
        if (message !== undefined && !/^[A-Za-z0-9 +\-_.,:#]{1,64}$/.test(message)) {
          throw new errors.InvalidBindingMessage("binding_message outside the allowed set");
        }
      },
      async validateRequestContext() {},
      async verifyUserCode() {},
      async triggerAuthenticationDevice(ctx, request, account) {
        requests.push({ user: account.accountId, binding_message: request.params?.binding_message
                        ?? ctx.oidc.params.binding_message, request });
      },
    },
  },
});
provider.proxy = false;
const auths = []; // {path, basic}: how each request to the provider authenticated
const callback = provider.callback();
opServer.on("request", (req, res) => {
  auths.push({ path: req.url, basic: /^Basic /.test(req.headers.authorization || "") });
  return callback(req, res);
});

function reply(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

const control = http.createServer(async (req, res) => {
  try {
    const [, action, user] = req.url.split("/");
    if (req.method === "GET" && action === "auths") return reply(res, 200, auths);
    if (req.method === "GET" && action === "requests") {
      return reply(res, 200, requests.map((r) => ({ user: r.user, binding_message: r.binding_message,
                                                     id: r.request.jti, client: r.request.clientId })));
    }
    const found = [...requests].reverse().find((r) => r.user === user);
    if (!found) return reply(res, 404, { error: "no request for " + user });
    if (req.method === "POST" && action === "approve") {
      const grant = new provider.Grant({ accountId: user, clientId: found.request.clientId });
      grant.addOIDCScope("openid");
      await grant.save();
      await provider.backchannelResult(found.request, grant);
      return reply(res, 200, { ok: true });
    }
    if (req.method === "POST" && action === "deny") {
      await provider.backchannelResult(found.request, new errors.AccessDenied("the user said no"));
      return reply(res, 200, { ok: true });
    }
    reply(res, 404, { error: "unknown" });
  } catch (e) {
    reply(res, 500, { error: String(e) });
  }
});
const cport = await listen(control);
process.stdout.write(JSON.stringify({ issuer, control: `http://127.0.0.1:${cport}` }) + "\n");
