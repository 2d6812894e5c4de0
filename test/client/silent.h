/*
 * silent.h — a server that never answers: a listening socket on loopback
 * whose connections the kernel accepts and nobody ever reads.
 */
#ifndef PYRATE_TEST_SILENT_H
#define PYRATE_TEST_SILENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* listen on 127.0.0.1, an ephemeral port; returns the fd, sets *port */
static inline int
silent_listen(int *port)
{
	struct sockaddr_in a;
	socklen_t	len = sizeof(a);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
		getsockname(fd, (struct sockaddr *) &a, &len) != 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

/* a loopback port nothing listens on */
static inline int
closed_port(void)
{
	int			port = 0;
	int			fd = silent_listen(&port);

	close(fd);
	return port;
}

#endif							/* PYRATE_TEST_SILENT_H */
