#include "invtest.h"
int main(void){return 0;}
