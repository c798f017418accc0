# nooelint: oelint.bbclass.underscores
# (The class name seesaw-bundle is the one promised to the layer's users,
# matching the recipe names seesaw, seesaw-keys, seesaw-boot-script.)
#
# seesaw-bundle: builds a signed one-file seesaw bundle from an image.
#
# A bundle recipe (see recipes-core/bundles/seesaw-bundle-example.bb):
#
#   inherit seesaw-bundle
#   SEESAW_BUNDLE_IMAGE = "my-image"
#   SEESAW_BUNDLE_VERSION = "1.4.0"
#   SEESAW_BUNDLE_SECURITY_VERSION = "3"
#
# and, usually in local.conf or the CI's site.conf, how it is signed:
#
#   SEESAW_BUNDLE_KEYS = "/secure/release.pem"            # by key file, or
#   SEESAW_BUNDLE_SIGN_CMD = "/opt/hsm/sign-ed25519 --slot 3"  # external signer
#   SEESAW_BUNDLE_SIGN_PUBKEY = "/secure/release.pub"
#   SEESAW_BUNDLE_COUNTERSIGN_KEYS = "/secure/fleet.pem"  # optional, bundle sign
#
# Output in DEPLOY_DIR_IMAGE: ${SEESAW_BUNDLE_NAME}.seesaw and the link
# ${SEESAW_BUNDLE_LINK_NAME}.seesaw (and with SEESAW_BUNDLE_NETWORK_LAYOUT =
# "1" the directory ${SEESAW_BUNDLE_NAME}.network/).
#
# The external signer gets the bytes to sign (the DSSE pre-authentication
# encoding of payload type and manifest) on stdin and prints the raw 64-byte
# ed25519 signature, base64, on stdout; seesaw checks it against
# SEESAW_BUNDLE_SIGN_PUBKEY before it goes into the bundle. The private key
# can stay in an HSM ("seesaw bundle create --sign-command CMD --sign-pubkey
# PEM"). The network layout comes from "seesaw bundle create --output-dir DIR";
# the build stops with a clear message if the seesaw being built lacks either.
#
# Private keys are never copied: seesaw reads them where they are. The task
# runs every time (nostamp), so a bundle always carries the current keys'
# signatures and no signed bundle comes out of the shared state cache.

inherit deploy nopackages seesaw-common

# The image whose root file system goes into the bundle, and its type.
SEESAW_BUNDLE_IMAGE ?= ""
SEESAW_BUNDLE_IMAGE_FSTYPE ?= "ext4"
SEESAW_BUNDLE_IMAGE_FILE ?= "${DEPLOY_DIR_IMAGE}/${SEESAW_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}.${SEESAW_BUNDLE_IMAGE_FSTYPE}"

# The manifest.
SEESAW_BUNDLE_COMPATIBLE ?= "${SEESAW_COMPATIBLE}"
SEESAW_BUNDLE_VERSION ?= "${PV}"
SEESAW_BUNDLE_SECURITY_VERSION ?= "0"
SEESAW_BUNDLE_EXPIRES ?= ""
SEESAW_BUNDLE_CHUNK_SIZE ?= ""
SEESAW_BUNDLE_ZSTD_LEVEL ?= ""

# Signing: private key files (PKCS#8 PEM) and/or an external command.
SEESAW_BUNDLE_KEYS ?= "${@'${SEESAW_DEV_KEYS_DIR}/release.pem' if d.getVar('SEESAW_DEV_KEYS') == '1' else ''}"
SEESAW_BUNDLE_COUNTERSIGN_KEYS ?= "${@'${SEESAW_DEV_KEYS_DIR}/fleet.pem' if d.getVar('SEESAW_DEV_KEYS') == '1' else ''}"
SEESAW_BUNDLE_SIGN_CMD ?= ""
SEESAW_BUNDLE_SIGN_PUBKEY ?= ""

# "1": also write the network layout (needs "bundle create --output-dir").
SEESAW_BUNDLE_NETWORK_LAYOUT ?= "0"
# Earlier images devices run (paths, space-separated; network layout only):
# the block store keeps the blocks they lack apart, so deltas download less.
SEESAW_BUNDLE_DELTA_BASES ?= ""

SEESAW_BUNDLE_NAME ?= "${SEESAW_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}-${SEESAW_BUNDLE_VERSION}"
SEESAW_BUNDLE_LINK_NAME ?= "${SEESAW_BUNDLE_IMAGE}${IMAGE_MACHINE_SUFFIX}"

SEESAW_BUNDLE_HELPER ?= "${SEESAW_LAYERDIR}/scripts/seesaw-make-bundle"

DEPENDS:append = " seesaw-native"
PACKAGE_ARCH = "${MACHINE_ARCH}"
INHIBIT_DEFAULT_DEPS = "1"

do_configure[noexec] = "1"
do_compile[noexec] = "1"
do_install[noexec] = "1"

# (Needed: the image dependency, the network flag and the skip message
# depend on values set in local.conf.)
# nooelint: oelint.task.noanonpython
python () {
    image = d.getVar('SEESAW_BUNDLE_IMAGE')
    if not image:
        bb.fatal('%s: set SEESAW_BUNDLE_IMAGE to the image recipe to bundle' % d.getVar('PN'))
    d.appendVarFlag('do_bundle', 'depends', ' %s:do_image_complete' % image)
    if not d.getVar('SEESAW_BUNDLE_KEYS') and not d.getVar('SEESAW_BUNDLE_SIGN_CMD'):
        raise bb.parse.SkipRecipe('no signing key: set SEESAW_BUNDLE_KEYS (private key files) or '
                                  'SEESAW_BUNDLE_SIGN_CMD and SEESAW_BUNDLE_SIGN_PUBKEY in local.conf, '
                                  'or SEESAW_DEV_KEYS = "1" for development keys')
    if d.getVar('SEESAW_BUNDLE_SIGN_CMD'):
        # An external signer may talk to a network HSM or signing service.
        d.setVarFlag('do_bundle', 'network', '1')
    if d.getVar('SEESAW_DEV_KEYS') == '1':
        bb.warn('%s: signing with the seesaw DEVELOPMENT keys; never ship this bundle' % d.getVar('PN'))
}

do_bundle () {
    set -- --seesaw ${STAGING_BINDIR_NATIVE}/seesaw \
        --image "${SEESAW_BUNDLE_IMAGE_FILE}" \
        --compatible "${SEESAW_BUNDLE_COMPATIBLE}" \
        --version "${SEESAW_BUNDLE_VERSION}" \
        --security-version "${SEESAW_BUNDLE_SECURITY_VERSION}" \
        --output "${B}/bundle/${SEESAW_BUNDLE_NAME}.seesaw"
    [ -z "${SEESAW_BUNDLE_EXPIRES}" ] || set -- "$@" --expires "${SEESAW_BUNDLE_EXPIRES}"
    [ -z "${SEESAW_BUNDLE_CHUNK_SIZE}" ] || set -- "$@" --chunk-size "${SEESAW_BUNDLE_CHUNK_SIZE}"
    [ -z "${SEESAW_BUNDLE_ZSTD_LEVEL}" ] || set -- "$@" --zstd-level "${SEESAW_BUNDLE_ZSTD_LEVEL}"
    for key in ${SEESAW_BUNDLE_KEYS}; do
        set -- "$@" --key "$key"
    done
    for key in ${SEESAW_BUNDLE_COUNTERSIGN_KEYS}; do
        set -- "$@" --countersign-key "$key"
    done
    if [ -n "${SEESAW_BUNDLE_SIGN_CMD}" ]; then
        set -- "$@" --sign-command "${SEESAW_BUNDLE_SIGN_CMD}" --sign-pubkey "${SEESAW_BUNDLE_SIGN_PUBKEY}"
    fi
    if [ "${SEESAW_BUNDLE_NETWORK_LAYOUT}" = "1" ]; then
        set -- "$@" --network-dir "${B}/bundle/${SEESAW_BUNDLE_NAME}.network"
        for base in ${SEESAW_BUNDLE_DELTA_BASES}; do
            set -- "$@" --delta-base "$base"
        done
    fi
    rm -rf ${B}/bundle
    mkdir -p ${B}/bundle
    bash ${SEESAW_BUNDLE_HELPER} "$@"
}
do_bundle[doc] = "Makes the signed seesaw bundle of SEESAW_BUNDLE_IMAGE"
do_bundle[dirs] = "${B}"
do_bundle[nostamp] = "1"
do_bundle[depends] += "seesaw-native:do_populate_sysroot"
addtask bundle after do_prepare_recipe_sysroot before do_deploy

do_deploy () {
    install -d ${DEPLOYDIR}
    install -m 0644 ${B}/bundle/${SEESAW_BUNDLE_NAME}.seesaw ${DEPLOYDIR}/
    ln -sf ${SEESAW_BUNDLE_NAME}.seesaw ${DEPLOYDIR}/${SEESAW_BUNDLE_LINK_NAME}.seesaw
    if [ -d ${B}/bundle/${SEESAW_BUNDLE_NAME}.network ]; then
        cp -R ${B}/bundle/${SEESAW_BUNDLE_NAME}.network ${DEPLOYDIR}/
    fi
}
addtask deploy after do_bundle before do_build
