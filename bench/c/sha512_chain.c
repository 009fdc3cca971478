/* How fast can OpenSSL's own SHA-512 block function go when each block depends on the one
 * before, as in PBKDF2 (one compression feeds the next), compared with hashing one long
 * message (what `openssl speed sha512` measures)?  Build: cc -O2 sha512_chain.c -lcrypto */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    static unsigned char big[1 << 20];
    unsigned char block[128];
    SHA512_CTX c;
    const int n = 1000000;
    memset(big, 1, sizeof big);
    memset(block, 7, sizeof block);
    for (int run = 0; run < 3; run++) {
        SHA512_Init(&c);
        double t0 = now();
        for (int i = 0; i < n; i++) {
            SHA512_Transform(&c, block);
            block[0] = (unsigned char)c.h[0]; /* the next block depends on this one */
        }
        double t1 = now();
        SHA512_Init(&c);
        for (int i = 0; i < 128; i++) /* 128 MiB: 1M blocks of one message */
            SHA512_Update(&c, big, sizeof big);
        double t2 = now();
        printf("OpenSSL SHA-512: chained single blocks %.1f ns/block, one long message %.1f ns/block\n",
               (t1 - t0) * 1e9 / n, (t2 - t1) * 1e9 / (128.0 * sizeof big / 128));
    }
    return 0;
}
