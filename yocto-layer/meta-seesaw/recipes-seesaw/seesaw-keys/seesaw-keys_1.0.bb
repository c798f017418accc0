# nooelint: oelint.var.mandatoryvar.SRC_URI
# (No SRC_URI: the keys come from SEESAW_TRUST_KEYS_DIR, a path on the build
# host set in local.conf; do_install tracks them with file-checksums.)

SUMMARY = "Public trust keys for seesaw (/etc/seesaw/keys)"
DESCRIPTION = "Installs the public keys of seesaw's trust roles from the \
               directory named by SEESAW_TRUST_KEYS_DIR in local.conf. \
               Private keys are refused. The development keys are used only \
               with SEESAW_DEV_KEYS = 1."
# (seesaw has no public home page yet; .invalid marks the placeholder.)
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://seesaw.invalid/"
BUGTRACKER = "https://seesaw.invalid/issues"
SECTION = "admin"
CVE_PRODUCT = "seesaw"
LICENSE = "MIT"
# (No upstream source: the recipe only installs key files named in
# local.conf, so it points at the common MIT text.)
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit allarch seesaw-common

INHIBIT_DEFAULT_DEPS = "1"
do_configure[noexec] = "1"
do_compile[noexec] = "1"

def seesaw_key_paths(d):
    import os
    keydir = seesaw_keys_dir(d)
    paths = []
    for role in (d.getVar('SEESAW_TRUST_ROLES') or '').split():
        for name in seesaw_role_keyfiles(d, role):
            paths.append(os.path.join(keydir, name))
    return paths

# (Needed: without keys the recipe must be skipped with a message saying what
# to set in local.conf, and the key files must be tracked for rebuilds.)
# nooelint: oelint.task.noanonpython
python () {
    import os
    keydir = seesaw_keys_dir(d)
    if not keydir:
        raise bb.parse.SkipRecipe('seesaw-keys: set SEESAW_TRUST_KEYS_DIR in local.conf to the directory '
                                  'holding the PUBLIC keys (%s), or SEESAW_DEV_KEYS = "1" for development '
                                  'keys on a development board' % ', '.join(
                                      os.path.basename(p) for p in seesaw_key_paths(d)))
    if d.getVar('SEESAW_DEV_KEYS') != '1':
        dev = os.path.realpath(d.getVar('SEESAW_DEV_KEYS_DIR'))
        if os.path.realpath(keydir) == dev:
            raise bb.parse.SkipRecipe('seesaw-keys: SEESAW_TRUST_KEYS_DIR is the development key directory '
                                      '%s; set SEESAW_DEV_KEYS = "1" if that is really meant' % dev)
    # Rebuild when a key file changes, not only when its path does.
    d.appendVarFlag('do_install', 'file-checksums',
                    ' ' + ' '.join('%s:%s' % (p, os.path.exists(p)) for p in seesaw_key_paths(d)))
}

python do_install () {
    import os
    dev = d.getVar('SEESAW_DEV_KEYS') == '1'
    devdir = d.getVar('SEESAW_DEV_KEYS_DIR')
    devkeys = set()
    if not dev and os.path.isdir(devdir):
        for name in os.listdir(devdir):
            if name.endswith('.pub'):
                with open(os.path.join(devdir, name), 'rb') as f:
                    devkeys.add(f.read().strip())
    dest = d.expand('${D}${sysconfdir}/seesaw/keys')
    bb.utils.mkdirhier(dest)
    for path in seesaw_key_paths(d):
        if not os.path.isfile(path):
            bb.fatal('seesaw-keys: %s does not exist (SEESAW_TRUST_KEYS_DIR, SEESAW_TRUST_KEYFILES)%s'
                     % (path, '; run keys/make-dev-keys.sh in the seesaw tree first' if dev else ''))
        with open(path, 'rb') as f:
            data = f.read()
        if b'PRIVATE KEY' in data:
            bb.fatal('seesaw-keys: %s holds a PRIVATE key; only public keys (.pub, '
                     'SubjectPublicKeyInfo PEM) may go into an image' % path)
        if b'-----BEGIN PUBLIC KEY-----' not in data:
            bb.fatal('seesaw-keys: %s is not a PEM public key (-----BEGIN PUBLIC KEY-----)' % path)
        if data.strip() in devkeys:
            bb.fatal('seesaw-keys: %s is a development key (same as one in %s) but SEESAW_DEV_KEYS is not "1"'
                     % (path, devdir))
        out = os.path.join(dest, os.path.basename(path))
        with open(out, 'wb') as f:
            f.write(data)
        os.chmod(out, 0o644)
    if dev:
        bb.warn('seesaw-keys: installing the DEVELOPMENT keys from %s: anyone with a copy of the seesaw '
                'tree can sign bundles this image accepts. Never ship this image.' % devdir)
        with open(os.path.join(dest, 'DEVELOPMENT-KEYS'), 'w') as f:
            f.write('The keys in this directory are seesaw development keys. Do not ship.\n')
}

FILES:${PN} += "${sysconfdir}/seesaw/keys"

# Keys for the target's /etc: nothing to build natively.
BBCLASSEXTEND = ""
