"""One render function per page; page files only call them."""
