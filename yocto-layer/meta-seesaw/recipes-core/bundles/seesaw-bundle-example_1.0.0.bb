# nooelint: oelint.var.mandatoryvar.SRC_URI
# (No SRC_URI: the input is the image SEESAW_BUNDLE_IMAGE from DEPLOY_DIR_IMAGE.)

SUMMARY = "Signed seesaw bundle of seesaw-image-example"
DESCRIPTION = "Builds the signed one-file bundle of seesaw-image-example's \
               ext4 root file system into DEPLOY_DIR_IMAGE."
# (seesaw has no public home page yet; .invalid marks the placeholder.)
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://seesaw.invalid/"
BUGTRACKER = "https://seesaw.invalid/issues"
SECTION = "images"
CVE_PRODUCT = "seesaw"
LICENSE = "MIT"
# (No upstream source: a bundle is made from an image of this build, so the
# recipe points at the common MIT text.)
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit seesaw-bundle

SEESAW_BUNDLE_IMAGE = "seesaw-image-example"
# The bundle version is this recipe's version (PV, 1.0.0 from the file name)
# unless SEESAW_BUNDLE_VERSION is set. Raise the security version whenever
# devices must no longer accept older bundles (the anti-rollback floor).
SEESAW_BUNDLE_SECURITY_VERSION ?= "1"

# A bundle for the target's slots: nothing to build natively.
BBCLASSEXTEND = ""
