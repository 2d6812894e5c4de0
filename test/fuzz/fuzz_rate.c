/*
 * fuzz_rate — libFuzzer target for the rate parser and rate-list validation.
 *
 * Any input: parsing never crashes and either fails with a reason or yields
 * a rate in range whose canonical text parses back to the same rate; any
 * list of rates validates without crashing and, when valid, is sorted and
 * obeys every rule.
 */
#include "pyrate_core.h"

#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	char	   *save = NULL;
	char	   *tok;
	pyr_rate	rates[PYR_MAX_RATES + 1];
	int			n = 0;
	int			i;
	char		err[PYR_MSG_LEN];

	memcpy(text, data, size);
	text[size] = '\0';
	for (tok = strtok_r(text, ",", &save); tok && n <= PYR_MAX_RATES; tok = strtok_r(NULL, ",", &save))
	{
		pyr_rate	r;
		pyr_rate	again;
		char		canon[64];

		err[0] = '\0';
		if (!pyr_rate_parse(tok, &r, err, sizeof(err)))
		{
			if (err[0] == '\0')
				abort();		/* a failure always says why */
			continue;
		}
		if (r.limit < 1 || r.limit > PYR_MAX_LIMIT || r.interval < 1 || r.interval > PYR_MAX_INTERVAL)
			abort();
		pyr_rate_format(&r, canon, sizeof(canon));
		if (!pyr_rate_parse(canon, &again, err, sizeof(err)) ||
			again.limit != r.limit || again.interval != r.interval)
			abort();
		rates[n++] = r;
	}
	if (pyr_rates_validate(rates, n, err, sizeof(err)) == PYR_RATES_OK)
	{
		for (i = 1; i < n; i++)
			if (rates[i].interval <= rates[i - 1].interval ||
				rates[i].limit <= rates[i - 1].limit ||
				(__int128) rates[i].limit * rates[i - 1].interval >
				(__int128) rates[i - 1].limit * rates[i].interval)
				abort();
	}
	free(text);
	return 0;
}
