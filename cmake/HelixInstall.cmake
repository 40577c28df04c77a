# Installs libhelix.a, its headers (with the two Halide runtime headers it needs, so a
# consumer does not need Halide, and DLPack's for the C ABI) and a CMake package:
# find_package(helix) -> helix::helix.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS helix ${HELIX_GPU_ARCHIVES} EXPORT helixTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/helix DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
find_path(HELIX_HALIDE_INCLUDE_DIR HalideBuffer.h HINTS "${HalideHelpers_DIR}/../../../include"
          NO_DEFAULT_PATH NO_CMAKE_FIND_ROOT_PATH REQUIRED)
install(FILES ${HELIX_HALIDE_INCLUDE_DIR}/HalideBuffer.h ${HELIX_HALIDE_INCLUDE_DIR}/HalideRuntime.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/helix/halide)
install(FILES ${HELIX_DLPACK_BUILD_INCLUDE}/dlpack/dlpack.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/helix/dlpack)

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/helix)
install(EXPORT helixTargets NAMESPACE helix:: DESTINATION ${config_dir})
configure_package_config_file(cmake/helixConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/helixConfig.cmake
                              INSTALL_DESTINATION ${config_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/helixConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/helixConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/helixConfigVersion.cmake
        DESTINATION ${config_dir})
