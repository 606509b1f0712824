/*
 * timeparse.c — a time as a user writes it (as_of=, until=, --from-time):
 * milliseconds since the epoch, or an RFC 3339 date-time, parsed strictly.
 *
 * strptime(3) and timegm(3), used before, took what RFC 3339 does not: a
 * 30 February (normalised to 2 March: a frozen view at a day the operator
 * never asked for), one-digit fields, a '.' with no digits.  Here every
 * field has its exact width and range, the day is checked against its
 * month (leap years by the Gregorian rule), and the date becomes days by
 * the proleptic Gregorian calendar, with no time zone of the process
 * involved.  Times before 1970 are refused, as negative milliseconds are.
 */
#include "escqrs/util.h"

/* @p n digits at @p s as a number in [min, max]; false otherwise. */
static bool digits(const char *s, int n, int min, int max, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v >= min && v <= max;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool es_parse_time_ms(const char *s, int64_t *ms)
{
    if (s[strspn(s, "0123456789")] == '\0') /* beyond int64 is a bad value, not a time */
        return es_parse_i64(s, 0, INT64_MAX, ms);
    int y, mo, d, h, mi, sec, oh = 0, om = 0;
    /* YYYY-MM-DDTHH:MM:SS: 19 characters, each in its place */
    if (strlen(s) < 20 || !digits(s, 4, 0, 9999, &y) || s[4] != '-' ||
        !digits(s + 5, 2, 1, 12, &mo) || s[7] != '-' || !digits(s + 8, 2, 1, 31, &d) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, 0, 23, &h) || s[13] != ':' ||
        !digits(s + 14, 2, 0, 59, &mi) || s[16] != ':' || !digits(s + 17, 2, 0, 60, &sec) ||
        d > days_in_month(y, mo))
        return false;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++) {
            if (n < 3)
                frac = frac * 10 + (*p - '0');
        }
        if (n == 0)
            return false;
        for (; n < 3; n++)
            frac *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && digits(p + 1, 2, 0, 23, &oh) && p[3] == ':' &&
               digits(p + 4, 2, 0, 59, &om)) {
        sign = *p == '+' ? 1 : -1;
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    /* a leap second (:60) is the next minute's first, as POSIX time counts it */
    int64_t t =
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    if (t < 0)
        return false;
    *ms = t * 1000 + frac;
    return true;
}
