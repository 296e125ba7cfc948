// oidc_server.mjs — a real OAuth 2.0 / OIDC authorization server for the
// vault-broker's `oauth` mode tests: oidc-provider (npm), on 127.0.0.1:PORT,
// with one confidential client (client_secret_post / basic) allowed the
// refresh_token grant, revocation (RFC 7009) and introspection (RFC 7662)
// enabled, and a grant plus a refresh token issued for it at start.
//
//   node tests/js/oidc_server.mjs PORT
//
// Prints one JSON line {issuer, token_endpoint, revocation_endpoint,
// introspection_endpoint, client_id, client_secret, refresh_token,
// refresh_tokens (one per grant, the first = refresh_token)} once it
// listens, then serves until killed.
import Provider from "oidc-provider";

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;
const client = {
  client_id: "sanctum-vault",
  client_secret: "vault-client-secret-0123456789abcdef",
  grant_types: ["authorization_code", "refresh_token"],
  redirect_uris: ["http://127.0.0.1/cb"],
  token_endpoint_auth_method: "client_secret_post",
};
const provider = new Provider(issuer, {
  clients: [client],
  features: { revocation: { enabled: true }, introspection: { enabled: true }, devInteractions: { enabled: false } },
  scopes: ["openid", "offline_access", "sheets.write"],
  issueRefreshToken: async () => true,
  rotateRefreshToken: false,
  ttl: { AccessToken: 3600, RefreshToken: 86400 },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));

// Four grants, each with its refresh token: revoking any token of a grant
// revokes all of its tokens here (oidc-provider's revocation), so each
// test that ends a lease uses a grant of its own.
const c = await provider.Client.find(client.client_id);
const refreshTokens = [];
for (let i = 0; i < 4; i++) {
  const grant = new provider.Grant({ accountId: "buyer", clientId: client.client_id });
  grant.addOIDCScope("openid offline_access sheets.write");
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    client: c, accountId: "buyer", grantId, scope: "openid offline_access sheets.write", gty: "authorization_code",
  });
  refreshTokens.push(await rt.save());
}
const refresh = refreshTokens[0];

const server = provider.listen(port, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({
    issuer, token_endpoint: `${issuer}/token`, revocation_endpoint: `${issuer}/token/revocation`,
    introspection_endpoint: `${issuer}/token/introspection`, client_id: client.client_id,
    client_secret: client.client_secret, refresh_token: refresh, refresh_tokens: refreshTokens,
  }) + "\n");
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
