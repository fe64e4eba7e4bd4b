# Finds the libraries edr-worker links, each through pkg-config, and stops
# with a message naming the Debian package when one is missing.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: install the Debian package "
                      "'pkg-config' (scripts/install-deps.sh does)")
endif()
find_package(Threads REQUIRED)

function(edr_require_pkg var module debian_pkg)
  pkg_check_modules(${var} QUIET IMPORTED_TARGET ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR "missing dependency: ${module} (pkg-config module "
                        "'${module}'); install the Debian package "
                        "'${debian_pkg}' or run scripts/install-deps.sh")
  endif()
  message(STATUS "found ${module} ${${var}_VERSION}")
endfunction()

edr_require_pkg(RDKAFKA rdkafka librdkafka-dev)
edr_require_pkg(YAJL yajl libyajl-dev)
edr_require_pkg(HIREDIS hiredis libhiredis-dev)
edr_require_pkg(LIBPQ libpq libpq-dev)
edr_require_pkg(CUNIT cunit libcunit1-dev)
edr_require_pkg(MHD libmicrohttpd libmicrohttpd-dev)
