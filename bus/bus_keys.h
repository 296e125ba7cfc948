/*  bus_keys.h — CURVE keys, the ZAP allow-list, and principals.

    Layout of the keys directory (zcert files, compatible with pyzmq's
    zmq.auth):
      <keys_dir>/<name>.key          public certificate of a service/client (0644)
      <keys_dir>/<name>.key_secret   its secret certificate (mode 0600)
      <allow_dir>/<name>.key         public certificates allowed to connect,
                                     each with metadata principal = "svc:authz"
                                     (directory 0755, files 0644: public only)
    keys_dir itself is made 0700. Under systemd, keys_dir is the daemon's
    credentials directory ($CREDENTIALS_DIRECTORY, %d in the unit), where
    the files are read-only copies.

    zauth (CZMQ) authenticates connections against allow_dir: an unknown
    key gets no connection. The principal of a message is NOT read from
    zframe_meta ("principal") — a client can supply that itself when its
    cert lacks the key — but mapped here from the client's User-Id (its
    public key, Z85) to the principal recorded in the allow-list file.
*/
#ifndef BUS_KEYS_H
#define BUS_KEYS_H

#include <czmq.h>
#include <stdbool.h>

#define BUS_KEY_Z85_LEN 40

typedef struct bus_allow_t bus_allow_t;

/*  A key file name: 1-64 of [A-Za-z0-9._-], not starting with '.'. */
bool bus_key_name_valid (const char *name);

/*  The path of the systemd credential name (LoadCredential=NAME:...,
    LoadCredentialEncrypted=, SetCredential=) in this process's
    credentials directory, $CREDENTIALS_DIRECTORY/NAME, into out: how a
    daemon finds a secret its unit delivers (the unit loads it as root;
    the file under /etc/sanctum stays unreadable to the daemon's dynamic
    user). what names it in the messages ("master key credential").
    Returns 0, or BUS_EINVAL with err set: name is not a file name (1-255
    bytes, no '/', not "." or ".."), $CREDENTIALS_DIRECTORY is not set
    (not started by systemd with a credential), or the path does not fit
    out. The file itself is not opened. */
int bus_credential_path (char *out, size_t out_len, const char *name, const char *what,
                         char *err, size_t err_len);

/*  Load (or, when create is true and absent, generate and save) the cert
    <keys_dir>/<name>; name must be bus_key_name_valid. Returns NULL on
    failure (logged). */
zcert_t *bus_keys_load (const char *keys_dir, const char *name, bool create);

/*  Public key (Z85) of <keys_dir>/<name>.key into out; 0 or BUS_ENOTFOUND. */
int bus_keys_public (const char *keys_dir, const char *name, char out [BUS_KEY_Z85_LEN + 1]);

/*  A principal is "<class>:<name>", class svc|ops|ext|user, name of
    [A-Za-z0-9._@-], at most 100 bytes. */
bool bus_principal_valid (const char *principal);

/*  Add public key public_z85 to the allow-list as <allow_dir>/<name>.key
    with the given principal, safely: the key must be valid Z85, not already
    present under another file (zauth aborts on duplicates), the metadata
    short and quoted; written under a dot-name then renamed into place.
    Replaces an existing file of the same name. Returns 0, BUS_EINVAL,
    BUS_EEXIST (key already allowed under another name), BUS_EIO. */
int bus_allow_add (const char *allow_dir, const char *name, const char *public_z85,
                   const char *principal);

/*  The principal map of an allow-list directory, cached; rescans the
    directory when a key is not found and the directory changed since the
    last scan (else at most once a second), and on bus_allow_refresh(). */
bus_allow_t *bus_allow_new (const char *allow_dir);
void bus_allow_destroy (bus_allow_t **self_p);

/*  Principal for a client's User-Id (Z85 public key), or NULL: the caller
    refuses the message. The string is owned by the map and valid until the
    next refresh; copy it. */
const char *bus_allow_principal (bus_allow_t *self, const char *user_id);

/*  Rescan the directory now. Returns the number of principals. */
int bus_allow_refresh (bus_allow_t *self);

/*  Has a key left the list, or changed principal, in a rescan since the
    last call? (Clears the answer.) Connections already open with such a
    key must then be closed: zauth checks keys at the handshake only. */
bool bus_allow_revoked (bus_allow_t *self);

/*  Start the process's zauth actor with CURVE against allow_dir (one per
    process; every zsock CURVE server in the process is covered). zauth
    runs VERBOSE and CZMQ's log goes through bus_log (bus_log_capture_zsys):
    each key zauth refuses becomes a warning "CURVE handshake refused:
    client key K from ADDRESS is not in the allow-list" (fields peer_key,
    peer_address, reason "handshake_refused"), at most 1 line per key per
    10 s, then a count of the lines left out; zauth's other lines are
    dropped. With verbose, every zauth line is logged instead (debugging;
    careful: a PLAIN request's line would carry its password). */
zactor_t *bus_auth_start (const char *allow_dir, bool verbose);

/*  Write the pending "suppressed" summaries of refused-key lines (call
    about once a second). */
void bus_auth_flush (void);

/*  Make sock a CURVE server with cert, ZAP domain "sanctum". */
void bus_keys_apply_server (zsock_t *sock, zcert_t *cert);

/*  Make sock a CURVE client of server_public_z85 with cert. */
void bus_keys_apply_client (zsock_t *sock, zcert_t *cert, const char *server_public_z85);

#endif
