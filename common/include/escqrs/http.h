/**
 * @file http.h
 * @brief Transitional: the HTTP server (http_server.h) and client
 *        (http_client.h); include the one you use.
 */
#ifndef ESCQRS_HTTP_H
#define ESCQRS_HTTP_H

#include "escqrs/http_client.h"
#include "escqrs/http_server.h"

#endif
