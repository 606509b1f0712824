# escqrsModule.cmake — build an escqrs domain module (a shared object the
# stock programs load at start-up; escqrs/module.h is the contract).
# Shipped in the CMake package (find_package(escqrs) includes it) and used
# in-tree for the shipped modules, so cart and account are built exactly
# as a team builds its own.
#
#   escqrs_add_module(<name> SOURCES <c files>... SCHEMAS <avsc files>...
#                     [SCHEMA_TABLE <symbol>])
#
# builds the MODULE library escqrs-<name>.so (the target is <name>, so
# target_include_directories(<name> ...) and $<TARGET_FILE:<name>> work; the
# programs load it as `modules = <name>`), compiled
# with hidden visibility so the only exported symbol is the entry point that
# ES_MODULE_DEFINE() marks, and installs it to lib/escqrs/modules under the
# install prefix.  The .avsc files are embedded into a generated C table
#
#   const es_module_schema_t <name>_schemas[];   /* {NULL, NULL}-terminated */
#
# (<name> made a C identifier, or SCHEMA_TABLE) that a module source refers
# to with its own declaration:
#
#   extern const es_module_schema_t cart_schemas[];
#   static const es_module_t cart_module = {.sdk_version = ES_SDK_VERSION, ...,
#                                           .schemas = cart_schemas};
#   ES_MODULE_DEFINE(cart_module)
#
# Each schema's name is its file name without ".avsc" ("cart.events"); the
# programs register it under the subject "<name>-value".  The generated
# source is the target's property ESCQRS_SCHEMAS_SOURCE.
include_guard(GLOBAL)
include(GNUInstallDirs)

# Where modules are installed, under the install prefix (a cache variable, so
# a team may point it elsewhere).
set(ESCQRS_MODULES_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/escqrs/modules
    CACHE STRING "Install directory of escqrs domain modules, under the prefix")

# Generate <output> (a C source) holding <symbol>[], the .avsc files given.
function(escqrs_embed_schemas output symbol)
  set(files ${ARGN})
  set(script ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/embed_schemas.cmake)
  string(REPLACE ";" "|" joined "${files}")
  add_custom_command(
    OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${output} -DSYMBOL=${symbol} "-DFILES=${joined}"
            -P ${script}
    DEPENDS ${files} ${script}
    COMMENT "Embedding ${symbol}: ${files}"
    VERBATIM)
  # The generated file declares its table just before defining it.
  set_source_files_properties(${output} PROPERTIES GENERATED TRUE
                              COMPILE_OPTIONS "-Wno-missing-prototypes")
endfunction()

function(escqrs_add_module name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "SCHEMA_TABLE" "SOURCES;SCHEMAS")
  if(NOT arg_SOURCES)
    message(FATAL_ERROR "escqrs_add_module(${name}): SOURCES is empty")
  endif()
  string(MAKE_C_IDENTIFIER "${name}" cname)
  if(NOT arg_SCHEMA_TABLE)
    set(arg_SCHEMA_TABLE ${cname}_schemas)
  endif()
  set(target ${name})
  set(schemas_c ${CMAKE_CURRENT_BINARY_DIR}/escqrs-${name}-schemas.c)
  set(schema_files)
  foreach(f ${arg_SCHEMAS})
    get_filename_component(abs ${f} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND schema_files ${abs})
  endforeach()
  escqrs_embed_schemas(${schemas_c} ${arg_SCHEMA_TABLE} ${schema_files})

  add_library(${target} MODULE ${arg_SOURCES} ${schemas_c})
  target_link_libraries(${target} PRIVATE escqrs::escqrs)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME escqrs-${name}
    C_VISIBILITY_PRESET hidden
    ESCQRS_SCHEMAS_SOURCE ${schemas_c}
    INSTALL_RPATH "$ORIGIN/../..")
  # In escqrs' own tree the modules go where the programs look by default
  # (escqrs/modules beside libescqrs.so, as when installed).
  if(DEFINED ESCQRS_MODULES_BUILD_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ESCQRS_MODULES_BUILD_DIR})
  endif()
  install(TARGETS ${target} LIBRARY DESTINATION ${ESCQRS_MODULES_INSTALL_DIR})
endfunction()
