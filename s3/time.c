/*
 * time.c — the two timestamp forms S3 sends, to epoch milliseconds (UTC, via timegm):
 *   ISO 8601 (XML bodies):  YYYY-MM-DD('T'|'t'|' ')hh:mm:ss[.fraction][Z|z|+hh:mm|-hh:mm|+hhmm]
 *                           the fraction may have any number of digits (AWS sends 3, RGW 3,
 *                           others 6 or 9); digits past the millisecond are truncated;
 *                           no zone at all is read as UTC.
 *   RFC 1123 (headers):     Wkd, DD Mon YYYY hh:mm:ss GMT   (also "UTC" or "+0000")
 * Anything else, or a field out of range (month 13, 31 April, hour 24), is S3_E_ARG.
 * Also the clocks every module uses (wall vs monotonic) and the ISO 8601 form of a time.
 */
#include "s3/s3.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return 0;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

static int days_in_month(int year, int mon)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return mon == 2 && leap ? 29 : d[mon - 1];
}

static int to_ms(int year, int mon, int day, int hh, int mm, int ss, int ms, long offset_s,
                 int64_t *out)
{
    if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hh > 23 ||
        mm > 59 || ss > 60) /* 60: a leap second, which timegm folds into the next minute */
        return S3_E_ARG;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    time_t t = timegm(&tm);
    *out = ((int64_t)t - offset_s) * 1000 + ms;
    return S3_E_OK;
}

static int parse_iso(const char *p, int64_t *out_ms)
{
    int y, mo, d, hh, mi, ss, ms = 0;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return S3_E_ARG;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return S3_E_ARG;
    p++;
    if (!digits(&p, 2, &hh) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &ss))
        return S3_E_ARG;
    if (*p == '.' || *p == ',') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 3)
                ms = ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return S3_E_ARG;
        for (; n < 3; n++)
            ms *= 10;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!digits(&p, 2, &oh))
            return S3_E_ARG;
        if (*p == ':')
            p++;
        if (!digits(&p, 2, &om) || oh > 23 || om > 59)
            return S3_E_ARG;
        off = sign * (oh * 3600L + om * 60L);
    }
    if (*p != '\0')
        return S3_E_ARG;
    return to_ms(y, mo, d, hh, mi, ss, ms, off, out_ms);
}

static int parse_rfc1123(const char *p, int64_t *out_ms)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const char days[] = "SunMonTueWedThuFriSat";
    int found = 0;
    for (int i = 0; i < 7; i++)
        found |= strncmp(p, days + 3 * i, 3) == 0;
    if (!found || p[3] != ',' || p[4] != ' ')
        return S3_E_ARG;
    p += 5;
    int d, y, hh, mi, ss, mo = 0;
    if (!digits(&p, 2, &d) || *p++ != ' ')
        return S3_E_ARG;
    for (int i = 0; i < 12; i++)
        if (strncmp(p, months + 3 * i, 3) == 0)
            mo = i + 1;
    if (!mo || p[3] != ' ')
        return S3_E_ARG;
    p += 4;
    if (!digits(&p, 4, &y) || *p++ != ' ' || !digits(&p, 2, &hh) || *p++ != ':' ||
        !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &ss) || *p++ != ' ')
        return S3_E_ARG;
    if (strcmp(p, "GMT") != 0 && strcmp(p, "UTC") != 0 && strcmp(p, "+0000") != 0)
        return S3_E_ARG;
    return to_ms(y, mo, d, hh, mi, ss, 0, 0, out_ms);
}

int s3_parse_time_ms(const char *s, int64_t *out_ms)
{
    if (!s || !out_ms)
        return S3_E_ARG;
    if (s[0] >= '0' && s[0] <= '9')
        return parse_iso(s, out_ms);
    return parse_rfc1123(s, out_ms);
}

/* ---- clocks ------------------------------------------------------------------------------ */

int64_t s3_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t s3_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void s3_iso8601_ms(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}
